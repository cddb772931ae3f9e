//! The demo web app, shoal/demo-web: HTTP on port 80 answering with the host's name, like
//! the "friendlyhello" app of Docker's getting-started guide. The image runs this same
//! script; the process runtime runs it with the host's busybox.

/// Image names the process runtime knows how to run without Docker.
pub fn is_demo_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    name == "shoal/demo-web" || name == "shoal/demo-web:latest"
}

/// The entrypoint script of the image, images/demo-web/entrypoint.sh.
pub const ENTRYPOINT: &str = include_str!("../../../images/demo-web/entrypoint.sh");

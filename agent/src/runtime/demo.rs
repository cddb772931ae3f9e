//! The demo web app, shoal/demo-web: HTTP on port 80 answering with the host's name, like
//! the "friendlyhello" app of Docker's getting-started guide. The image runs this same
//! script; the process runtime runs it with the host's busybox.

/// Image names the process runtime knows how to run without Docker.
pub fn is_demo_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    name == "shoal/demo-web" || name == "shoal/demo-web:latest"
}

/// The entrypoint script, shared with images/demo-web (keep them identical).
pub const ENTRYPOINT: &str = r#"#!/bin/sh
# shoal/demo-web: answers every request with this task's hostname.
WWW="${WWW:-/www}"
mkdir -p "$WWW"
HOST="$(hostname)"
printf 'Hello from %s\n' "$HOST" > "$WWW/index.html"
if command -v httpd >/dev/null 2>&1; then set -- httpd; else set -- busybox httpd; fi
exec "$@" -f -p "${PORT:-80}" -h "$WWW"
"#;

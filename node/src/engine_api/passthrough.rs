//! Everything on the socket that is not swarm mode (containers with attach, logs and
//! exec, images, volumes, build, system, plugins) goes to the node's own dockerd, as one
//! socket serves it all on a Swarm node. Requests and answers stream through unchanged;
//! a hijacked connection (attach, exec start: `Upgrade: tcp`) is upgraded on both sides
//! and copied both ways until either end closes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use shoal_docker::engine::{parse_version, version_text};

use super::ApiError;

/// Paths (without their /vX.Y prefix) that shoal answers itself; the rest is dockerd's.
/// (Network paths are shoal's; those for a network the swarm does not have go on to
/// dockerd from their handlers.)
pub fn is_swarm_path(path: &str) -> bool {
    const OWN: [&str; 12] = [
        "/_ping",
        "/events",
        "/version",
        "/info",
        "/swarm",
        "/nodes",
        "/services",
        "/tasks",
        "/networks",
        "/distribution",
        "/secrets",
        "/configs",
    ];
    OWN.iter().any(|own| {
        path.strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Where the node's dockerd listens: DOCKER_HOST when it names a unix socket (as the
/// docker runtime reads it), else docker's default.
pub fn dockerd_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Sends `req` (its URI as the client sent it) to dockerd at `socket` and streams the
/// answer back.
pub async fn forward(socket: &Path, own_socket: &Path, mut req: Request) -> Response {
    if socket == own_socket {
        return no_engine(socket, "it is this socket");
    }
    let mut sender = match connect(socket).await {
        Ok(s) => s,
        Err(e) => return no_engine(socket, &e),
    };
    at_engine_version(&mut req, socket).await;
    let upgrading = wants_upgrade(req.headers());
    let client_side = upgrading.then(|| hyper::upgrade::on(&mut req));
    let mut answer = match sender.send_request(req).await {
        Ok(a) => a,
        Err(e) => {
            return ApiError {
                status: StatusCode::BAD_GATEWAY,
                message: format!("the node's dockerd did not answer: {e}"),
            }
            .into_response();
        }
    };
    if let (Some(client_side), StatusCode::SWITCHING_PROTOCOLS) = (client_side, answer.status()) {
        let engine_side = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            match tokio::try_join!(client_side, engine_side) {
                Ok((client, engine)) => {
                    let (mut client, mut engine) = (TokioIo::new(client), TokioIo::new(engine));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
                Err(e) => tracing::debug!("engine api passthrough upgrade: {e}"),
            }
        });
    }
    answer.map(Body::new)
}

/// An HTTP/1 connection to dockerd at `socket`, driven by a task of its own (which also
/// carries a connection upgrade through).
async fn connect(socket: &Path) -> Result<SendRequest<Body>, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("engine api passthrough: {e}");
        }
    });
    Ok(sender)
}

/// dockerd refuses a client newer than itself ("client version 1.50 is too new"), and
/// shoal's socket speaks a newer version than an older dockerd: such a request goes to
/// dockerd at dockerd's own version.
async fn at_engine_version(req: &mut Request, socket: &Path) {
    let Some((asked, rest)) = super::split_version(req.uri().path()) else {
        return;
    };
    let (Some(asked), Some(engine)) = (parse_version(asked), engine_version(socket).await) else {
        return;
    };
    if asked <= engine {
        return;
    }
    let query = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
    let uri = format!("/v{}{rest}{query}", version_text(engine));
    if let Ok(uri) = uri.parse() {
        *req.uri_mut() = uri;
    }
}

/// The newest API version the node's dockerd speaks (asked once).
async fn engine_version(socket: &Path) -> Option<(u32, u32)> {
    static ENGINE: OnceLock<(u32, u32)> = OnceLock::new();
    if let Some(v) = ENGINE.get() {
        return Some(*v);
    }
    let doc = get_json(socket, "/version").await?;
    let v = parse_version(doc["ApiVersion"].as_str()?)?;
    Some(*ENGINE.get_or_init(|| v))
}

/// Sends dockerd a request of shoal's making (a network that is not swarm-scoped, a
/// list to merge) and gives back its answer.
pub async fn send(own_socket: &Path, method: Method, path: &str, body: Bytes) -> Response {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body));
    match req {
        Ok(req) => forward(&dockerd_socket(), own_socket, req).await,
        Err(e) => ApiError::bad_request(e.to_string()).into_response(),
    }
}

/// dockerd's JSON answer to `GET path`, if it gives one soon (None without dockerd).
pub async fn engine_json(own_socket: &Path, path: &str) -> Option<serde_json::Value> {
    let socket = dockerd_socket();
    if socket == own_socket {
        return None;
    }
    get_json(&socket, path).await
}

/// The JSON answer at `socket` to `GET path` (unversioned: dockerd's own version), if
/// it gives one within 2 s.
async fn get_json(socket: &Path, path: &str) -> Option<serde_json::Value> {
    let ask = async {
        let mut sender = connect(socket).await.ok()?;
        let req = Request::get(path)
            .header(header::HOST, "docker")
            .body(Body::empty())
            .ok()?;
        let answer = sender.send_request(req).await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let body = axum::body::to_bytes(Body::new(answer.into_body()), 4 << 20)
            .await
            .ok()?;
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// What a client reads on a node without a container engine (e.g. `--runtime process`).
fn no_engine(socket: &Path, why: &str) -> Response {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "this node has no container engine to serve containers, images and volumes: \
             dockerd at unix://{} cannot be reached ({why}). Swarm commands (node, service, \
             network, stack) still work here",
            socket.display()
        ),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_paths_are_shoals_and_the_rest_goes_to_dockerd() {
        for own in [
            "/_ping",
            "/services",
            "/services/web/update",
            "/swarm/init",
            "/networks",
            "/networks/br0/connect",
        ] {
            assert!(is_swarm_path(own), "{own}");
        }
        for theirs in [
            "/containers/json",
            "/images/json",
            "/exec/1/start",
            "/volumes",
            "/build",
            "/servicesx",
        ] {
            assert!(!is_swarm_path(theirs), "{theirs}");
        }
    }

    #[tokio::test]
    async fn without_dockerd_the_client_reads_that_the_node_has_no_container_engine() {
        let dir = std::env::temp_dir().join(format!("shoal-pass-{}", std::process::id()));
        let (gone, own) = (dir.join("docker.sock"), dir.join("own.sock"));
        let req = || {
            Request::get("/v1.41/containers/json")
                .body(Body::empty())
                .unwrap()
        };
        for (socket, why) in [(&gone, "No such file"), (&own, "it is this socket")] {
            let answer = forward(socket, &own, req()).await;
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = axum::body::to_bytes(answer.into_body(), 4096)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains("no container engine") && text.contains(why),
                "{text}"
            );
        }
    }

    #[test]
    fn an_upgrade_is_asked_for_in_the_connection_header() {
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(wants_upgrade(&h));
    }
}

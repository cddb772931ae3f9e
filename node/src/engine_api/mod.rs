//! The Docker Engine API, served on <run-dir>/docker.sock so the docker CLI (and tools
//! such as Portainer) drive shoal. Swarm mode is shoal's: every operation goes through the
//! same Control service the `shoal` CLI calls, so both lead to the same state; this layer
//! only serves: the JSON shapes, filters and versions are shoal-docker's (engine::request
//! in, render out). The rest of the socket is the node's dockerd's (passthrough.rs).
//! It lives with the daemon rather than in manager/ (where DESIGN.md's layout first put
//! it) because /swarm init, join and leave and /info are node operations the daemon owns;
//! every cluster call still lands in manager/ through the Control service.

mod body;
mod events;
mod logs;
mod passthrough;
mod routes;
mod secrets;
pub mod tcp;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use shoal_docker::engine::{API_VERSION, MIN_API_VERSION, parse_version, version_text};
use shoal_docker::error::Invalid;

use crate::Daemon;

pub const SOCKET_NAME: &str = "docker.sock";

impl Daemon {
    /// The node's Docker Engine API socket (never to be taken for dockerd's).
    pub(crate) fn engine_socket(&self) -> std::path::PathBuf {
        self.args.run_dir.join(SOCKET_NAME)
    }
}

/// An error as dockerd answers it: a status code and `{"message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

/// gRPC codes as dockerd maps swarmkit's (errdefs); swarm-state refusals are 503.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let status = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // dockerd answers swarm-state refusals 503 (SDKs tolerate them, e.g. a forced
            // leave on a node outside a swarm); the daemon marks them where it makes them.
            Code::FailedPrecondition
                if s.metadata().contains_key(crate::lifecycle::SWARM_STATE) =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: s.message().to_string(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Serves the API on `socket` (root only, as dockerd's) until the daemon stops.
pub async fn serve(daemon: Arc<Daemon>, socket: &Path) -> crate::error::Result<()> {
    use crate::error::IoContext;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .and_then(|l| {
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map(|()| l)
        })
        .io(|| format!("binding {}", socket.display()))?;
    axum::serve(listener, app(daemon))
        .await
        .io(|| "serving the Docker Engine API".into())?;
    Ok(())
}

fn app(daemon: Arc<Daemon>) -> Router {
    // What is not swarm mode goes to dockerd first, unbounded and as sent. Of the rest,
    // the version prefix is taken off before routing, so one table serves /v1.41/x and
    // /x; bodies are bounded before that, so even a refused request has its body read
    // (or timed out) before the answer, and the handlers see bounded bytes only.
    let own_socket = Arc::new(daemon.engine_socket());
    Router::new()
        .fallback_service(routes::router(daemon))
        .layer(axum::middleware::from_fn(versioned))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(body::bounded))
        .layer(axum::middleware::from_fn_with_state(
            own_socket,
            dockerd_unless_swarm,
        ))
}

/// Passes a request that is not swarm mode to the node's dockerd.
async fn dockerd_unless_swarm(
    axum::extract::State(own_socket): axum::extract::State<Arc<std::path::PathBuf>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let logical = split_version(path).map_or(path, |(_, rest)| rest);
    if passthrough::is_swarm_path(logical) {
        return next.run(req).await;
    }
    tracing::debug!(method = %req.method(), uri = %req.uri(), "engine api: to dockerd");
    passthrough::forward(&passthrough::dockerd_socket(), &own_socket, req).await
}

/// The API version a request speaks: its `/vX.Y`, or the newest when it names none (as
/// dockerd takes it).
#[derive(Clone, Copy)]
pub struct ClientVersion(pub (u32, u32));

/// Strips and checks `/vX.Y` (kept as a `ClientVersion`), then stamps dockerd's headers
/// on every answer.
async fn versioned(mut req: Request, next: Next) -> Response {
    let mut client = API_VERSION;
    if let Some((version, rest)) = split_version(req.uri().path()) {
        if let Err(e) = check_version(version) {
            return with_headers(e.into_response());
        }
        client = parse_version(version).unwrap_or(API_VERSION);
        let mut uri = rest.to_string();
        if let Some(q) = req.uri().query() {
            uri = format!("{uri}?{q}");
        }
        *req.uri_mut() = uri.parse::<Uri>().unwrap_or_default();
    }
    req.extensions_mut().insert(ClientVersion(client));
    tracing::debug!(method = %req.method(), uri = %req.uri(), "engine api");
    with_headers(next.run(req).await)
}

fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let slash = rest.find('/')?;
    let version = &rest[..slash];
    version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then_some((version, &rest[slash..]))
}

fn check_version(v: &str) -> ApiResult<()> {
    let parsed = parse_version(v)
        .ok_or_else(|| ApiError::bad_request(format!("invalid API version {v:?}")))?;
    if parsed > API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {}",
            version_text(API_VERSION)
        )));
    }
    if parsed < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            version_text(MIN_API_VERSION)
        )));
    }
    Ok(())
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let server = format!("shoal/{} (linux)", env!("CARGO_PKG_VERSION"));
    for (k, v) in [
        ("api-version", version_text(API_VERSION)),
        ("docker-experimental", "false".into()),
        ("ostype", "linux".into()),
        ("server", server),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_split_off_and_checked_as_dockerd_does() {
        assert_eq!(
            split_version("/v1.41/services/web"),
            Some(("1.41", "/services/web"))
        );
        assert_eq!(split_version("/services/web"), None);
        assert_eq!(split_version("/volumes/x"), None);
        assert!(check_version("1.41").is_ok());
        assert!(check_version("1.50").is_ok(), "the docker CLI 28.x's");
        assert!(check_version("1.24").is_ok());
        let new = check_version("1.51").unwrap_err();
        assert_eq!(new.status, StatusCode::BAD_REQUEST);
        assert!(
            new.message
                .contains("Maximum supported API version is 1.50")
        );
        assert!(
            check_version("1.12")
                .unwrap_err()
                .message
                .contains("too old")
        );
        assert!(check_version("x").is_err());
    }

    #[test]
    fn grpc_codes_map_to_dockerd_status_codes() {
        let code = |s: tonic::Status| ApiError::from(s).status;
        assert_eq!(code(tonic::Status::not_found("x")), StatusCode::NOT_FOUND);
        assert_eq!(
            code(tonic::Status::invalid_argument("x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            code(tonic::Status::already_exists("x")),
            StatusCode::CONFLICT
        );
        assert_eq!(
            code(crate::lifecycle::swarm_state(
                "This node is not a swarm manager. Use ..."
            )),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            code(tonic::Status::failed_precondition("a network in use")),
            StatusCode::BAD_REQUEST
        );
    }
}

//! Request bodies, bounded in size and in time before any handler sees them: a client
//! cannot make the daemon buffer without limit, nor hold a connection open by sending
//! fewer bytes than its Content-Length promised.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::ApiError;

/// The largest body accepted: a service spec is a few KiB, a large one tens of KiB.
pub const MAX_BODY: usize = 4 << 20;
/// How long a whole body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an oversized body is read and thrown away so the client reads the 413
/// (closing on unread data makes the kernel reset the connection instead).
const DRAIN_MAX: usize = 64 << 20;

/// Middleware: replaces the request's body with its bytes, read within MAX_BODY and
/// BODY_TIMEOUT, or answers 413/408 without calling the handler.
pub async fn bounded(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_BODY as u64) {
        // A client waiting for "100 Continue" has sent nothing yet: no need to drain.
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            drain(body).await;
        }
        return closing(too_large(Some(n)));
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) if is_length_limit(&e) => closing(too_large(None)),
        Ok(Err(e)) => {
            closing(ApiError::bad_request(format!("reading the request body: {e}")).into_response())
        }
        Err(_) => closing(
            ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!(
                    "the request body did not arrive within {} s{}: send the whole body, \
                     and a Content-Length that matches it",
                    BODY_TIMEOUT.as_secs(),
                    declared.map_or(String::new(), |n| format!(" ({n} bytes announced)"))
                ),
            }
            .into_response(),
        ),
    }
}

fn too_large(declared: Option<u64>) -> Response {
    let size = declared.map_or_else(
        || "the request body".to_string(),
        |n| format!("a body of {n} bytes"),
    );
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "{size} is larger than the {} MiB this API accepts: send a smaller request",
            MAX_BODY >> 20
        ),
    }
    .into_response()
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit exceeded") {
            return true;
        }
        source = s.source();
    }
    false
}

/// The connection is closed after an error about the body: what is left of it on the
/// wire cannot be told apart from the next request.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Reads and discards up to DRAIN_MAX bytes of `body` within BODY_TIMEOUT.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

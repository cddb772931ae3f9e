//! GET /services/{id}/logs: the lines the `shoal service logs` call streams, framed as
//! dockerd frames a non-TTY stream (8-byte headers), with their times (timestamps) and
//! the details the docker CLI reads to print `web.1.<task>@<node> | line`; since leaves
//! out older lines.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use shoal_proto as pb;
use shoal_proto::control_server::Control;
use tonic::Request;

use super::routes::{Api, flag};
use super::{ApiError, ApiResult};

/// One frame of a multiplexed stream: stream 1 (stdout), then the length, big-endian.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[1, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn tail(q: &HashMap<String, String>) -> ApiResult<i64> {
    match q.get("tail").map(String::as_str) {
        None | Some("" | "all") => Ok(-1),
        Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "tail: invalid value {n:?}: a number of lines, or all"
            ))
        }),
    }
}

pub async fn service_logs(
    State(api): State<std::sync::Arc<Api>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let on = |k: &str| flag(&q, k);
    if !on("stdout") && !on("stderr") {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    // The docker CLI sends since as seconds since the epoch ("10m" is its own sum).
    let since = match q.get("since").map(String::as_str) {
        None | Some("" | "0") => 0,
        Some(t) => super::events::nanos(t, "since")?,
    };
    let timestamps = on("timestamps");
    let details = on("details");
    let service = api
        .ctl
        .get_service(Request::new(pb::ServiceRef { id_or_name: id }))
        .await?
        .into_inner();
    let nodes: HashMap<String, String> = api
        .ctl
        .list_nodes(Request::new(pb::Empty {}))
        .await?
        .into_inner()
        .nodes
        .into_iter()
        .filter_map(|n| Some((n.description?.hostname, n.id)))
        .collect();
    let lines = api
        .ctl
        .service_logs(Request::new(pb::ServiceLogsRequest {
            service: service.id.clone(),
            follow: on("follow"),
            tail: tail(&q)?,
            since_unix_nanos: since,
        }))
        .await?
        .into_inner();
    let service_id = service.id;
    let body = lines.filter_map(move |line| {
        let out = match line {
            Ok(l) => {
                // As dockerd writes them: the time, the details, then the line.
                let mut payload = Vec::new();
                if timestamps {
                    payload.extend_from_slice(
                        format!("{} ", shoal_proto::time::rfc3339(l.time_unix_nanos)).as_bytes(),
                    );
                }
                if details {
                    let node = nodes.get(&l.node).map(String::as_str).unwrap_or(&l.node);
                    payload.extend_from_slice(
                        format!(
                            "com.docker.swarm.node.id={node},com.docker.swarm.service.id={service_id},com.docker.swarm.task.id={} ",
                            l.task_id
                        )
                        .as_bytes(),
                    );
                }
                payload.extend_from_slice(&l.data);
                payload.push(b'\n');
                Some(Ok::<_, std::io::Error>(frame(&payload)))
            }
            Err(e) => {
                tracing::debug!("service logs: {e}");
                None
            }
        };
        std::future::ready(out)
    });
    Ok((
        [("content-type", "application/vnd.docker.multiplexed-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stdout_and_a_big_endian_length() {
        let f = frame(b"hello\n");
        assert_eq!(&f[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(&f[8..], b"hello\n");
    }
}

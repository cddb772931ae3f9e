//! GET /events: the swarm's events (on a manager) and the node's dockerd's (containers,
//! images, volumes, local networks) in one stream, as a Swarm node's socket gives them;
//! `since` replays what is remembered, `until` ends the stream, filters choose.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, RawQuery, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use shoal_docker::engine::filters::Filters;
use shoal_docker::render::events::{FILTER_KEYS, local_wanted, wanted};
use tokio::sync::broadcast;

use super::routes::{Api, Params};
use super::{ApiError, ApiResult, passthrough};

type Lines = BoxStream<'static, Result<Bytes, std::io::Error>>;

pub async fn events(
    State(api): State<Arc<Api>>,
    Query(q): Params,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let filters = Filters::parse(q.get("filters").map(String::as_str), &FILTER_KEYS)?;
    let since = q.get("since").map(|t| nanos(t, "since")).transpose()?;
    let until = q.get("until").map(|t| nanos(t, "until")).transpose()?;
    let recorder = {
        let rt = api.daemon.runtime.lock().await;
        rt.as_ref().and_then(|rt| rt.swarm_events.clone())
    };
    let local_too = local_wanted(&filters);
    let swarm: Lines = match recorder {
        Some(recorder) => {
            // Without `since` only what happens from now on, as dockerd.
            let (past, live) = recorder.since(since.unwrap_or(i64::MAX));
            swarm_lines(past, live, filters, until)
        }
        None => stream::empty().boxed(),
    };
    let local: Lines = if local_too {
        let path = raw.map_or("/events".to_string(), |q| format!("/events?{q}"));
        let answer = passthrough::send(&api.own_socket, Method::GET, &path, Bytes::new()).await;
        if answer.status().is_success() {
            lines(answer.into_body())
        } else {
            stream::empty().boxed()
        }
    } else {
        stream::empty().boxed()
    };
    let merged = stream::select(swarm, local);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(merged),
    )
        .into_response())
}

/// A time as docker sends it: seconds since the epoch, with a fraction or not.
pub(super) fn nanos(t: &str, what: &str) -> ApiResult<i64> {
    shoal_proto::time::parse_epoch_seconds(t).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid {what} {t:?}: give seconds since the epoch"
        ))
    })
}

/// The remembered swarm events, then the live ones, each on a line, up to `until`.
fn swarm_lines(
    past: Vec<Value>,
    live: broadcast::Receiver<Value>,
    filters: Filters,
    until: Option<i64>,
) -> Lines {
    let before_end =
        move |e: &Value| until.is_none_or(|u| e["timeNano"].as_i64().is_some_and(|t| t <= u));
    let filters = Arc::new(filters);
    let keep = move |e: &Value| wanted(e, &filters) && before_end(e);
    let replay = stream::iter(past.into_iter().filter(keep.clone()));
    let live = stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |e| std::future::ready(keep(e)));
    let remaining = until.map(|u| {
        let left = u.saturating_sub(shoal_proto::now_nanos()).max(0);
        Duration::from_nanos(u64::try_from(left).unwrap_or(0))
    });
    let live: BoxStream<'static, Value> = match remaining {
        Some(left) => live.take_until(tokio::time::sleep(left)).boxed(),
        None => live.boxed(),
    };
    replay
        .chain(live)
        .map(|e| Ok(Bytes::from(format!("{e}\n"))))
        .boxed()
}

/// dockerd's event stream cut into whole lines, so two streams interleave by event.
fn lines(body: Body) -> Lines {
    let chunks = body.into_data_stream();
    stream::unfold(
        (chunks, Vec::<u8>::new()),
        |(mut chunks, mut buf)| async move {
            loop {
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    return Some((Ok(Bytes::from(line)), (chunks, buf)));
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        return Some((Err(std::io::Error::other(e)), (chunks, Vec::new())));
                    }
                    None if buf.is_empty() => return None,
                    None => {
                        return Some((Ok(Bytes::from(std::mem::take(&mut buf))), (chunks, buf)));
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_docker_sends_them() {
        assert_eq!(
            nanos("1700000000", "since").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            nanos("1700000000.5", "since").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            nanos("1700000000.000000007", "until").unwrap(),
            1_700_000_000_000_000_007
        );
        assert!(
            nanos("yesterday", "since")
                .unwrap_err()
                .message
                .contains("invalid since")
        );
    }

    #[tokio::test]
    async fn a_split_stream_comes_out_in_whole_lines() {
        let parts: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from("{\"a\":")),
            Ok(Bytes::from("1}\n{\"b\":2}\n{\"c\"")),
            Ok(Bytes::from(":3}\n")),
        ];
        let body = Body::from_stream(stream::iter(parts));
        let got: Vec<Bytes> = lines(body).map(Result::unwrap).collect().await;
        assert_eq!(got, ["{\"a\":1}\n", "{\"b\":2}\n", "{\"c\":3}\n"]);
    }
}

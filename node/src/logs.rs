//! `service logs` on the manager the CLI talks to: asks the nodes running the service's
//! tasks for their output through the log broker and relays it, line by line, named as
//! docker names it (<service>.<slot>.<task>@<node>).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_manager::Manager;
use shoal_proto::{ListTasksResponse, LogLine, ServiceLogsRequest};
use tokio::sync::mpsc;
use tonic::Status;

/// How long a non-following request waits for slow nodes.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A line as the nodes send it: its RFC 3339 time, a space, the output; a line without
/// a time (written before times were kept) is all output.
fn split_time(line: &[u8]) -> (i64, &[u8]) {
    let Some(space) = line.iter().position(|b| *b == b' ') else {
        return (0, line);
    };
    match std::str::from_utf8(&line[..space])
        .ok()
        .and_then(shoal_proto::time::parse_rfc3339)
    {
        Some(t) => (t, &line[space + 1..]),
        None => (0, line),
    }
}

pub async fn relay(
    m: Arc<Manager>,
    listed: ListTasksResponse,
    request: ServiceLogsRequest,
    out: mpsc::Sender<Result<LogLine, Status>>,
) {
    let follow = request.follow;
    let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
    let mut names = HashMap::new();
    for t in listed.tasks.iter().filter(|t| !t.node_id.is_empty()) {
        by_node
            .entry(t.node_id.clone())
            .or_default()
            .push(t.id.clone());
        let middle = if t.slot > 0 {
            t.slot.to_string()
        } else {
            t.node_id.clone()
        };
        let node = listed
            .node_names
            .get(&t.node_id)
            .cloned()
            .unwrap_or_default();
        names.insert(
            t.id.clone(),
            (
                format!(
                    "{}.{}.{}",
                    t.service_name,
                    middle,
                    shoal_proto::ids::short(&t.id)
                ),
                node,
            ),
        );
    }
    let expected: usize = by_node.values().map(Vec::len).sum();
    let mut sub = m.logs.subscribe(by_node, &request).await;
    for node in &sub.unreachable {
        let host = listed
            .node_names
            .get(node)
            .cloned()
            .unwrap_or_else(|| node.clone());
        let _ = out
            .send(Err(Status::unavailable(format!(
                "node {host} is not connected: its tasks' logs are unavailable"
            ))))
            .await;
    }
    let unreachable: usize = sub.unreachable.len();
    let mut done = 0usize;
    let mut partial: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    while follow || done + unreachable < expected.max(1) {
        let next = if follow {
            tokio::select! {
                c = sub.chunks.recv() => c,
                () = out.closed() => return,
            }
        } else {
            match tokio::time::timeout_at(deadline, sub.chunks.recv()).await {
                Ok(c) => c,
                Err(_) => break,
            }
        };
        let Some(chunk) = next else { break };
        let buf = partial.entry(chunk.task_id.clone()).or_default();
        buf.extend_from_slice(&chunk.data);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            lines.push(buf.drain(..=pos).take(pos).collect());
        }
        if chunk.done && !buf.is_empty() {
            lines.push(std::mem::take(buf));
        }
        let (task_name, node) = names.get(&chunk.task_id).cloned().unwrap_or_default();
        for data in lines {
            let (time, data) = split_time(&data);
            let line = LogLine {
                task_id: chunk.task_id.clone(),
                task_name: task_name.clone(),
                node: node.clone(),
                data: data.to_vec(),
                time_unix_nanos: time,
            };
            if out.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if chunk.done {
            done += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_time;

    #[test]
    fn lines_lose_their_time_to_the_field() {
        assert_eq!(
            split_time(b"2023-11-14T22:13:20.5Z hello world"),
            (1_700_000_000_500_000_000, &b"hello world"[..])
        );
        assert_eq!(split_time(b"hello world"), (0, &b"hello world"[..]));
        assert_eq!(
            split_time(b"2023-11-14T22:13:20Z "),
            (1_700_000_000_000_000_000, &b""[..])
        );
        assert_eq!(split_time(b""), (0, &b""[..]));
    }
}

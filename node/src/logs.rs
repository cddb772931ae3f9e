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
    let on_node: HashMap<String, usize> =
        by_node.iter().map(|(n, t)| (n.clone(), t.len())).collect();
    let mut sub = m.logs.subscribe(by_node, &request).await;
    // As dockerd: the logs that can be had, then a warning naming the nodes that could
    // not be asked (an error ends the stream, so it comes last).
    let incomplete = (!sub.unreachable.is_empty()).then(|| {
        let hosts: Vec<String> = sub
            .unreachable
            .iter()
            .map(|n| listed.node_names.get(n).cloned().unwrap_or_else(|| n.clone()))
            .collect();
        Status::unavailable(format!(
            "warning: incomplete log stream. some logs could not be retrieved for the following reasons: node {} is not available",
            hosts.join(", node ")
        ))
    });
    let unreachable: usize = sub
        .unreachable
        .iter()
        .map(|n| on_node.get(n).copied().unwrap_or(0))
        .sum();
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
            let (time, data) = shoal_proto::time::split_time(&data);
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
    if let Some(warning) = incomplete {
        let _ = out.send(Err(warning)).await;
    }
}

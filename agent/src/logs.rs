//! Answers `service logs`: listens for log subscriptions from every manager this node
//! knows, and publishes the requested tasks' output (the tail, then new output while
//! following) until the subscription ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::{Empty, LogChunk, LogSubscription};
use tokio::sync::{mpsc, watch};

use crate::executor::{Managers, Workloads};
use crate::runtime::Runtime;

const FOLLOW_POLL: Duration = Duration::from_millis(300);

pub async fn serve(
    tls: LiveTls,
    managers: Managers,
    runtime: Arc<dyn Runtime>,
    workloads: Workloads,
) {
    let mut listening: HashSet<String> = HashSet::new();
    loop {
        for addr in managers.current() {
            if listening.insert(addr.clone()) {
                tokio::spawn(listen(
                    addr,
                    tls.clone(),
                    runtime.clone(),
                    workloads.clone(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn listen(addr: String, tls: LiveTls, runtime: Arc<dyn Runtime>, workloads: Workloads) {
    loop {
        if let Ok(channel) = tls.channel(&addr)
            && let Ok(stream) = DispatcherClient::new(channel.clone())
                .log_subscriptions(Empty {})
                .await
        {
            let mut stream = stream.into_inner();
            let mut cancels: HashMap<String, watch::Sender<bool>> = HashMap::new();
            while let Ok(Some(sub)) = stream.message().await {
                if sub.cancel {
                    if let Some(c) = cancels.remove(&sub.id) {
                        let _ = c.send(true);
                    }
                    continue;
                }
                let (cancel_tx, cancel_rx) = watch::channel(false);
                cancels.insert(sub.id.clone(), cancel_tx);
                let known = workloads.lock().expect("poisoned").clone();
                tokio::spawn(answer(
                    DispatcherClient::new(channel.clone()),
                    sub,
                    known,
                    runtime.clone(),
                    cancel_rx,
                ));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The last `tail` lines of `text` (all when negative), as the offset they start at.
fn tail_start(text: &str, tail: i64) -> usize {
    if tail < 0 {
        return 0;
    }
    if tail == 0 {
        return text.len();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut newlines = 0;
    for (i, b) in body.bytes().enumerate().rev() {
        if b == b'\n' {
            newlines += 1;
            if newlines == tail {
                return i + 1;
            }
        }
    }
    0
}

/// The offset of the first line written at or after `since` (unix nanoseconds; 0 for
/// all): lines start with their RFC 3339 time, in order.
fn since_start(text: &str, since: i64) -> usize {
    if since <= 0 {
        return 0;
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if shoal_proto::time::split_time(line.as_bytes()).0 >= since {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

async fn answer(
    mut client: DispatcherClient<tonic::transport::Channel>,
    sub: LogSubscription,
    known: HashMap<String, crate::executor::RuntimeId>,
    runtime: Arc<dyn Runtime>,
    cancel: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel::<LogChunk>(64);
    let publish = tokio::spawn(async move {
        client
            .publish_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut senders = Vec::new();
    for task_id in sub.task_ids.clone() {
        let tx = tx.clone();
        let runtime = runtime.clone();
        let rid = known
            .get(&task_id)
            .and_then(|cell| cell.lock().expect("poisoned").clone());
        let mut cancel = cancel.clone();
        let sub = sub.clone();
        senders.push(tokio::spawn(async move {
            let chunk = |data: Vec<u8>, done: bool| LogChunk {
                subscription_id: sub.id.clone(),
                task_id: task_id.clone(),
                data,
                done,
            };
            if let Some(rid) = rid {
                let text = runtime.logs(&rid).await.unwrap_or_default();
                // The later of the two, as dockerd: the tail, then what is not too old.
                let mut sent =
                    tail_start(&text, sub.tail).max(since_start(&text, sub.since_unix_nanos));
                if sent < text.len() {
                    let _ = tx
                        .send(chunk(text.as_bytes()[sent..].to_vec(), false))
                        .await;
                }
                sent = text.len();
                while sub.follow && !*cancel.borrow() {
                    tokio::select! {
                        () = tokio::time::sleep(FOLLOW_POLL) => {}
                        _ = cancel.changed() => break,
                    }
                    let text = runtime.logs(&rid).await.unwrap_or_default();
                    if text.len() > sent {
                        if tx
                            .send(chunk(text.as_bytes()[sent..].to_vec(), false))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        sent = text.len();
                    }
                }
            }
            let _ = tx.send(chunk(Vec::new(), true)).await;
        }));
    }
    drop(tx);
    for s in senders {
        let _ = s.await;
    }
    let _ = publish.await;
}

#[cfg(test)]
mod tests {
    use super::{since_start, tail_start};

    #[test]
    fn since_skips_older_lines() {
        let text = "2023-11-14T22:13:20Z a\n2023-11-14T22:13:21Z b\n2023-11-14T22:13:22Z c\n";
        let at = |s: i64| 1_700_000_000_000_000_000 + s * 1_000_000_000;
        assert_eq!(&text[since_start(text, 0)..], text);
        assert_eq!(
            &text[since_start(text, at(1))..],
            "2023-11-14T22:13:21Z b\n2023-11-14T22:13:22Z c\n"
        );
        assert_eq!(&text[since_start(text, at(5))..], "");
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        let text = "a\nb\nc\n";
        assert_eq!(&text[tail_start(text, 2)..], "b\nc\n");
        assert_eq!(&text[tail_start(text, 1)..], "c\n");
        assert_eq!(&text[tail_start(text, 10)..], text);
        assert_eq!(&text[tail_start(text, -1)..], text);
        assert_eq!(&text[tail_start(text, 0)..], "");
    }
}

//! The log broker: `service logs` asks the agents of the nodes running a service's tasks
//! for their output. Agents keep a subscription stream open to every manager they know,
//! so whichever manager a CLI talks to can reach every node.

use std::collections::HashMap;
use std::sync::Mutex;

use shoal_proto::{LogChunk, LogSubscription};
use tokio::sync::mpsc;

#[derive(Default)]
pub struct LogBroker {
    agents: Mutex<HashMap<String, mpsc::Sender<LogSubscription>>>,
    subscribers: Mutex<HashMap<String, mpsc::Sender<LogChunk>>>,
}

/// An open request for logs; cancels itself at the agents when dropped.
pub struct Subscription<'a> {
    broker: &'a LogBroker,
    id: String,
    nodes: Vec<String>,
    pub chunks: mpsc::Receiver<LogChunk>,
    /// Nodes that could not be asked (no agent connected).
    pub unreachable: Vec<String>,
}

impl LogBroker {
    /// An agent starts listening; a newer stream from the same node replaces the old.
    pub fn listen(&self, node_id: &str) -> mpsc::Receiver<LogSubscription> {
        let (tx, rx) = mpsc::channel(16);
        self.agents
            .lock()
            .expect("poisoned")
            .insert(node_id.to_string(), tx);
        rx
    }

    /// Output arriving from an agent.
    pub async fn publish(&self, chunk: LogChunk) {
        let tx = self
            .subscribers
            .lock()
            .expect("poisoned")
            .get(&chunk.subscription_id)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.send(chunk).await;
        }
    }

    /// Asks each node for the output of its tasks: `tasks` maps node ID -> task IDs;
    /// `request` says how much (follow, tail, since).
    pub async fn subscribe(
        &self,
        tasks: HashMap<String, Vec<String>>,
        request: &shoal_proto::ServiceLogsRequest,
    ) -> Subscription<'_> {
        let id = shoal_proto::ids::new_id();
        let (tx, rx) = mpsc::channel(256);
        self.subscribers
            .lock()
            .expect("poisoned")
            .insert(id.clone(), tx);
        let mut nodes = Vec::new();
        let mut unreachable = Vec::new();
        for (node, task_ids) in tasks {
            let agent = self.agents.lock().expect("poisoned").get(&node).cloned();
            let request = LogSubscription {
                id: id.clone(),
                task_ids,
                follow: request.follow,
                tail: request.tail,
                cancel: false,
                since_unix_nanos: request.since_unix_nanos,
            };
            match agent {
                Some(a) if a.send(request).await.is_ok() => nodes.push(node),
                _ => unreachable.push(node),
            }
        }
        Subscription {
            broker: self,
            id,
            nodes,
            chunks: rx,
            unreachable,
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.broker
            .subscribers
            .lock()
            .expect("poisoned")
            .remove(&self.id);
        let agents = self.broker.agents.lock().expect("poisoned");
        for node in &self.nodes {
            if let Some(a) = agents.get(node) {
                let _ = a.try_send(LogSubscription {
                    id: self.id.clone(),
                    cancel: true,
                    ..Default::default()
                });
            }
        }
    }
}

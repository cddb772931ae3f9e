//! The swarm's events on a manager, for the Engine API's /events: every change the store
//! applies that dockerd reports (a service, node or network created, updated, removed),
//! shaped as dockerd writes it, the last EVENTS_KEPT remembered for `--since` and sent to
//! every live listener.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;
use shoal_docker::render::events::swarm_event;
use shoal_manager::Manager;
use tokio::sync::broadcast;

/// How many past events `--since` can reach back over (dockerd keeps a similar window).
const EVENTS_KEPT: usize = 1024;

pub struct SwarmEvents {
    past: Mutex<VecDeque<Value>>,
    live: broadcast::Sender<Value>,
}

impl SwarmEvents {
    /// Records the manager's store changes from now on, until the manager stops.
    pub fn start(manager: &Manager) -> Arc<SwarmEvents> {
        let events = Arc::new(SwarmEvents {
            past: Mutex::new(VecDeque::with_capacity(EVENTS_KEPT)),
            live: broadcast::channel(256).0,
        });
        tokio::spawn(record(manager.store.watch(), Arc::downgrade(&events)));
        events
    }

    /// The remembered events from `since_nanos` on, and the live ones after them (taken
    /// together, so none falls between).
    pub fn since(&self, since_nanos: i64) -> (Vec<Value>, broadcast::Receiver<Value>) {
        let past = self.past.lock().expect("poisoned");
        let earlier = past
            .iter()
            .filter(|e| e["timeNano"].as_i64().is_some_and(|t| t >= since_nanos))
            .cloned()
            .collect();
        (earlier, self.live.subscribe())
    }

    fn push(&self, event: Value) {
        let mut past = self.past.lock().expect("poisoned");
        if past.len() == EVENTS_KEPT {
            past.pop_front();
        }
        past.push_back(event.clone());
        let _ = self.live.send(event);
    }
}

async fn record(
    mut changes: broadcast::Receiver<shoal_manager::state::store::Event>,
    events: Weak<SwarmEvents>,
) {
    loop {
        let change = match changes.recv().await {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} store changes went by faster than /events could record them");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(events) = events.upgrade() else {
            return;
        };
        if let Some(e) = swarm_event(change.action, &change.object, shoal_proto::now_nanos()) {
            events.push(e);
        }
    }
}

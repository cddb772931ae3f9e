//! `network connect` and `network disconnect`: a container on this node joins or leaves
//! an attachable network. The node asks a manager for an attachment task (which carries
//! the container's address), then waits for its own executor to plumb it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_agent::dataplane::DataPlane;
use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::{NetworkConnectRequest, NetworkConnectResponse, Task};
use tonic::Status;

use super::Daemon;

const SETTLE: Duration = Duration::from_secs(20);

/// The metadata key marking a refusal for a container this node's runtime cannot see
/// (the Engine API then leaves the request to the node's dockerd).
pub const UNKNOWN_CONTAINER: &str = "shoal-unknown-container";

struct Parts {
    tls: LiveTls,
    managers: Vec<String>,
    data_plane: Arc<DataPlane>,
    task_runtime: Arc<dyn shoal_agent::runtime::Runtime>,
}

impl Daemon {
    async fn connect_parts(&self) -> Result<Parts, Status> {
        let guard = self.runtime.lock().await;
        let rt = guard
            .as_ref()
            .ok_or_else(|| crate::lifecycle::swarm_state(crate::lifecycle::NOT_PART_OF_SWARM))?;
        let data_plane = rt.data_plane.clone().ok_or_else(|| {
            Status::unavailable(
                "the network driver is not running on this node: see the daemon's log",
            )
        })?;
        let session = rt.session_status.lock().expect("poisoned").managers.clone();
        Ok(Parts {
            tls: rt.tls.clone(),
            managers: if session.is_empty() {
                rt.state.manager_addrs.clone()
            } else {
                session
            },
            data_plane,
            task_runtime: rt.task_runtime.clone(),
        })
    }

    /// Connects a container on this node to an attachable overlay; a refusal for a
    /// container this node's runtime cannot see is marked `UNKNOWN_CONTAINER`.
    pub async fn connect_network(
        &self,
        req: NetworkConnectRequest,
    ) -> Result<NetworkConnectResponse, Status> {
        let parts = self.connect_parts().await?;
        // Refuse an unknown container before the managers record anything.
        shoal_agent::executor::container_netns(&parts.task_runtime, &req.container)
            .await
            .map_err(|e| {
                let mut status = Status::not_found(e);
                status.metadata_mut().insert(
                    UNKNOWN_CONTAINER,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                status
            })?;
        let task: Task = ask_managers(&parts, |mut c| {
            let r = req.clone();
            async move { c.attach_network(r).await.map(tonic::Response::into_inner) }
        })
        .await?;
        let start = Instant::now();
        loop {
            if let Some(addrs) = parts.data_plane.addresses(&task.id).await {
                return Ok(NetworkConnectResponse {
                    task_id: task.id,
                    address: addrs.join(", "),
                });
            }
            if start.elapsed() > SETTLE {
                return Err(Status::deadline_exceeded(format!(
                    "the connection (task {}) is recorded but not up after {SETTLE:?}: see `shoal debug gossip` and the daemon's log",
                    task.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn disconnect_network(&self, req: NetworkConnectRequest) -> Result<(), Status> {
        let parts = self.connect_parts().await?;
        ask_managers(&parts, |mut c| {
            let r = req.clone();
            async move { c.detach_network(r).await.map(|_| ()) }
        })
        .await
    }
}

/// Calls the first manager that answers; an answer (even a refusal) ends the search.
async fn ask_managers<T, F, Fut>(parts: &Parts, call: F) -> Result<T, Status>
where
    F: Fn(DispatcherClient<tonic::transport::Channel>) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut last = Status::unavailable("no manager known");
    for addr in &parts.managers {
        let Ok(channel) = parts.tls.channel(addr) else {
            continue;
        };
        match call(DispatcherClient::new(channel)).await {
            Err(s) if s.code() == tonic::Code::Unavailable => last = s,
            other => return other,
        }
    }
    Err(last)
}

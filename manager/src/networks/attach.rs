//! Attachments: a container started outside swarm (docker run, or any named network
//! namespace) joining an attachable overlay network. As in Swarm, the connection is a
//! task of its own on the container's node: it gets its address from the allocator like
//! any task, and the node's agent plumbs it and publishes its endpoint.

use shoal_proto::stored_object::Object;
use shoal_proto::{
    NetworkAttachmentConfig, NetworkAttachmentSpec, NetworkConnectRequest, StoreActionKind, Task,
    TaskSpec, TaskState,
};

use super::find_network;
use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::{State, action};

fn find(state: &State, node_id: &str, network_id: &str, container: &str) -> Option<Task> {
    state
        .tasks()
        .find(|t| {
            t.node_id == node_id
                && t.attached_container() == Some(container)
                && t.desired_state() <= TaskState::Running
                && t.spec
                    .as_ref()
                    .is_some_and(|s| s.networks.iter().any(|n| n.target == network_id))
        })
        .cloned()
}

pub async fn attach(m: &impl Proposer, req: NetworkConnectRequest) -> Result<Task> {
    if req.container.trim().is_empty() {
        return Err(ManagerError::InvalidArgument(
            "name the container to connect (a container name or ID, or a network namespace)".into(),
        ));
    }
    let now = shoal_proto::now_nanos();
    let mut created = None;
    m.update_with_retry(|s| {
        let network = find_network(s, &req.network)?;
        let name = network.name().to_string();
        let spec = network.spec.clone().unwrap_or_default();
        if spec.ingress {
            return Err(ManagerError::InvalidArgument(format!(
                "the ingress network {name} carries published ports only: containers cannot connect to it"
            )));
        }
        if !spec.attachable {
            return Err(ManagerError::FailedPrecondition(format!(
                "network {name} is not manually attachable: create it with `shoal network create --attachable`"
            )));
        }
        if find(s, &req.node_id, &network.id, &req.container).is_some() {
            return Err(ManagerError::FailedPrecondition(format!(
                "container {} is already connected to network {name}",
                req.container
            )));
        }
        let spec = TaskSpec {
            networks: vec![NetworkAttachmentConfig {
                target: network.id.clone(),
                aliases: req.aliases.clone(),
            }],
            attachment: Some(NetworkAttachmentSpec {
                container: req.container.clone(),
            }),
            ..Default::default()
        };
        let task = crate::tasks::created_task(&req.node_id, Some(spec), now);
        created = Some(task.clone());
        Ok(vec![action(StoreActionKind::Create, Object::Task(task))])
    })
    .await?;
    Ok(created.expect("set by the update"))
}

/// Disconnects: the agent unplumbs the container and the task is removed once stopped.
pub async fn detach(m: &impl Proposer, req: NetworkConnectRequest) -> Result<()> {
    m.update_with_retry(|s| {
        let network = find_network(s, &req.network)?;
        let mut task = find(s, &req.node_id, &network.id, &req.container).ok_or_else(|| {
            ManagerError::NotFound(format!(
                "container {} is not connected to network {}",
                req.container,
                network.name()
            ))
        })?;
        task.desired_state = TaskState::Shutdown as i32;
        Ok(vec![action(StoreActionKind::Update, Object::Task(task))])
    })
    .await
    .map(|_| ())
}

/// Attachment tasks still holding `network_id`, for refusing its removal.
pub fn users(state: &State, network_id: &str) -> Vec<String> {
    state
        .tasks()
        .filter(|t| t.desired_state() <= TaskState::Running)
        .filter(|t| t.networks.iter().any(|a| a.network_id == network_id))
        .filter_map(|t| t.attached_container().map(str::to_string))
        .collect()
}

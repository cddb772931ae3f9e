//! Node operations behind `node ls/inspect/update/promote/demote/rm` and `swarm join-token`,
//! with docker's rules and messages. They take the narrow Proposer seam, so they are
//! unit-tested without Raft (node_tests.rs).

use shoal_proto::stored_object::Object;
use shoal_proto::token::JoinToken;
use shoal_proto::{
    Node, NodeAvailability, NodeRole, NodeState, StoreActionKind, UpdateNodeRequest,
};

use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::{State, action};

/// Finds a node by full ID, hostname, or unique ID prefix, as the docker CLI does.
pub fn find_node(state: &State, key: &str) -> Result<Node> {
    crate::lookup::find_by(
        state.nodes(),
        key,
        |n| &n.id,
        Node::hostname,
        format!("No such node: {key}"),
    )
}

pub fn list_nodes(m: &impl Proposer) -> Vec<Node> {
    let leader = m.leader_raft_id();
    let mut nodes: Vec<Node> = m.store().view(|s| s.nodes().cloned().collect());
    // The leader flag is read from this manager's own Raft view, which is fresher than
    // what the leader last wrote.
    for n in &mut nodes {
        if let Some(ms) = n.manager_status.as_mut() {
            ms.leader = Some(ms.raft_id) == leader;
        }
    }
    nodes.sort_by(|a, b| a.hostname().cmp(b.hostname()).then(a.id.cmp(&b.id)));
    nodes
}

pub fn get_node(m: &impl Proposer, key: &str) -> Result<Node> {
    let id = m.store().view(|s| find_node(s, key))?.id;
    list_nodes(m)
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| ManagerError::NotFound(format!("No such node: {key}")))
}

pub async fn update_node(m: &impl Proposer, req: UpdateNodeRequest) -> Result<Node> {
    let node = m.store().view(|s| find_node(s, &req.id_or_name))?;
    if let Some(role) = req.role {
        let role = NodeRole::try_from(role)
            .map_err(|_| ManagerError::InvalidArgument(format!("unknown role {role}")))?;
        if role == NodeRole::Worker && node.manager_status.is_some() {
            refuse_demoting_last_manager(m, &node)?;
        }
    }
    let id = node.id.clone();
    let result = m
        .update_with_retry(|s| {
            let mut n = find_node(s, &id)?;
            let spec = n.spec.get_or_insert_default();
            if let Some(a) = req.availability {
                NodeAvailability::try_from(a).map_err(|_| {
                    ManagerError::InvalidArgument(format!("unknown availability {a}"))
                })?;
                spec.availability = a;
            }
            let labels = &mut spec.annotations.get_or_insert_default().labels;
            for k in &req.label_rm {
                if labels.remove(k).is_none() {
                    return Err(ManagerError::InvalidArgument(format!(
                        "key {k} doesn't exist in node's labels"
                    )));
                }
            }
            labels.extend(req.label_add.clone());
            if let Some(role) = req.role {
                spec.desired_role = role;
            }
            n.meta.get_or_insert_default().updated_at_unix_nanos = shoal_proto::now_nanos();
            Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
        })
        .await?;
    match result.objects.into_iter().next().and_then(|o| o.object) {
        Some(Object::Node(n)) => Ok(n),
        _ => get_node(m, &id),
    }
}

/// The leader removes a demoted manager from Raft (see leader.rs); this refuses up front
/// what could never succeed.
fn refuse_demoting_last_manager(m: &impl Proposer, node: &Node) -> Result<()> {
    let managers = m.store().view(|s| {
        s.nodes()
            .filter(|n| n.manager_status.is_some())
            .filter(|n| {
                n.spec.as_ref().map(shoal_proto::NodeSpec::desired_role) == Some(NodeRole::Manager)
            })
            .count()
    });
    if managers <= 1 {
        return Err(ManagerError::FailedPrecondition(format!(
            "attempting to demote the last manager of the swarm ({}); promote another node first",
            node.hostname()
        )));
    }
    Ok(())
}

pub async fn remove_node(m: &impl Proposer, key: &str, force: bool) -> Result<()> {
    let node = m.store().view(|s| find_node(s, key))?;
    if node.manager_status.is_some()
        || node.spec.as_ref().map(shoal_proto::NodeSpec::desired_role) == Some(NodeRole::Manager)
    {
        return Err(ManagerError::FailedPrecondition(format!(
            "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
            node.id
        )));
    }
    let down = node.status.as_ref().map(shoal_proto::NodeStatus::state) != Some(NodeState::Ready);
    if !down && !force {
        return Err(ManagerError::FailedPrecondition(format!(
            "node {} is not down and can't be removed; stop it first, or use --force",
            node.id
        )));
    }
    let id = node.id.clone();
    m.update_with_retry(|s| {
        let n = find_node(s, &id)?;
        let mut cluster = cluster_in(s)?;
        cluster.removed_nodes.push(n.id.clone());
        Ok(vec![
            action(StoreActionKind::Remove, Object::Node(n)),
            action(StoreActionKind::Update, Object::Cluster(cluster)),
        ])
    })
    .await
    .map(|_| ())
}

/// The cluster object, to be modified in a proposal.
fn cluster_in(s: &State) -> Result<shoal_proto::Cluster> {
    s.cluster().cloned().ok_or(ManagerError::FailedPrecondition(
        "the swarm is not initialised".into(),
    ))
}

/// The current join token for `role`, after rotating it if asked.
pub async fn join_token(m: &impl Proposer, role: NodeRole, rotate: bool) -> Result<String> {
    if rotate {
        m.update_with_retry(|s| {
            let mut cluster = cluster_in(s)?;
            let root = cluster.root_ca.get_or_insert_default();
            let fresh = JoinToken {
                ca_digest: root.ca_cert_digest.clone(),
                secret: shoal_proto::ids::random_base36(shoal_proto::token::SECRET_LEN),
            }
            .to_string();
            let tokens = root.join_tokens.get_or_insert_default();
            match role {
                NodeRole::Worker => tokens.worker = fresh,
                NodeRole::Manager => tokens.manager = fresh,
            }
            Ok(vec![action(
                StoreActionKind::Update,
                Object::Cluster(cluster),
            )])
        })
        .await?;
    }
    let tokens = m
        .store()
        .view(cluster_in)?
        .root_ca
        .and_then(|r| r.join_tokens)
        .unwrap_or_default();
    Ok(match role {
        NodeRole::Worker => tokens.worker,
        NodeRole::Manager => tokens.manager,
    })
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;

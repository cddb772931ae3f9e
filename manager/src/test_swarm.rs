//! A small swarm in a store without Raft, for unit tests of the components built on the
//! Proposer seam (node operations, dispatcher, leader duties).

use shoal_proto::stored_object::Object;
use shoal_proto::{
    Cluster, JoinTokens, ManagerStatus, Node, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, RootCa, StoreActionKind,
};

use crate::proposer::{Direct, Proposer, block_on};
use crate::state::store::{action, proposal};

/// A node named `host`; `manager` is its Raft ID when it is a manager.
pub fn node(id: &str, host: &str, manager: Option<u64>, state: NodeState) -> Node {
    Node {
        id: id.into(),
        spec: Some(NodeSpec {
            desired_role: if manager.is_some() {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            } as i32,
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: host.into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: state as i32,
            ..Default::default()
        }),
        manager_status: manager.map(|raft_id| ManagerStatus {
            raft_id,
            addr: format!("{host}:2377"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A swarm of one manager (raft 1, leading) and two workers, one of them down.
pub fn swarm() -> Direct {
    let m = Direct::leading(1);
    let cluster = Cluster {
        id: "c".into(),
        root_ca: Some(RootCa {
            join_tokens: Some(JoinTokens {
                worker: "SWMTKN-1-w".into(),
                manager: "SWMTKN-1-m".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    create(
        &m,
        vec![
            Object::Cluster(cluster),
            Object::Node(node("m1", "manager1", Some(1), NodeState::Ready)),
            Object::Node(node("w1", "worker1", None, NodeState::Ready)),
            Object::Node(node("w2", "worker2", None, NodeState::Down)),
        ],
    );
    m
}

/// Creates objects in the store, all in one proposal.
pub fn create(m: &Direct, objects: Vec<Object>) {
    let actions = objects
        .into_iter()
        .map(|o| action(StoreActionKind::Create, o))
        .collect();
    block_on(m.propose(proposal(actions))).expect("the objects are valid");
}

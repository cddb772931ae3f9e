//! The node operations on a store without Raft (proposer::Direct): docker's rules for
//! demoting, removing and relabelling nodes and rotating join tokens.

use super::*;
use crate::proposer::block_on;
use crate::test_swarm::swarm;

fn refused(e: &ManagerError, words: &str) -> bool {
    matches!(e, ManagerError::FailedPrecondition(w) | ManagerError::InvalidArgument(w) if w.contains(words))
}

#[test]
fn nodes_are_listed_by_hostname_with_the_leader_marked() {
    let m = swarm();
    let listed = list_nodes(&m);
    assert_eq!(
        listed.iter().map(Node::hostname).collect::<Vec<_>>(),
        ["manager1", "worker1", "worker2"]
    );
    assert!(listed[0].manager_status.as_ref().unwrap().leader);
    let ambiguous = get_node(&m, "w").unwrap_err();
    assert!(ambiguous.to_string().contains("ambiguous"), "{ambiguous}");
    assert_eq!(get_node(&m, "worker2").unwrap().id, "w2");
}

#[test]
fn the_last_manager_cannot_be_demoted_nor_a_manager_removed() {
    let m = swarm();
    let demote = UpdateNodeRequest {
        id_or_name: "manager1".into(),
        role: Some(NodeRole::Worker as i32),
        ..Default::default()
    };
    let e = block_on(update_node(&m, demote)).unwrap_err();
    assert!(refused(&e, "demote the last manager"), "{e}");
    let e = block_on(remove_node(&m, "manager1", true)).unwrap_err();
    assert!(
        refused(&e, "must be demoted to worker before removal"),
        "{e}"
    );
    assert_eq!(list_nodes(&m).len(), 3);
}

#[test]
fn a_node_that_is_up_needs_force_to_be_removed_and_is_remembered_as_removed() {
    let m = swarm();
    let e = block_on(remove_node(&m, "worker1", false)).unwrap_err();
    assert!(refused(&e, "is not down and can't be removed"), "{e}");
    block_on(remove_node(&m, "worker2", false)).unwrap();
    block_on(remove_node(&m, "worker1", true)).unwrap();
    assert_eq!(list_nodes(&m).len(), 1);
    let removed = m
        .store()
        .view(|s| s.cluster().unwrap().removed_nodes.clone());
    assert_eq!(
        removed,
        ["w2", "w1"],
        "their certificates are refused from now on"
    );
}

#[test]
fn a_missing_label_is_refused_and_nothing_changes() {
    let m = swarm();
    let add = UpdateNodeRequest {
        id_or_name: "worker1".into(),
        label_add: [("disk".to_string(), "ssd".to_string())].into(),
        ..Default::default()
    };
    block_on(update_node(&m, add)).unwrap();
    let bad = UpdateNodeRequest {
        id_or_name: "worker1".into(),
        label_add: [("zone".to_string(), "a".to_string())].into(),
        label_rm: vec!["colour".into()],
        ..Default::default()
    };
    let e = block_on(update_node(&m, bad)).unwrap_err();
    assert!(
        refused(&e, "key colour doesn't exist in node's labels"),
        "{e}"
    );
    let labels = get_node(&m, "worker1")
        .unwrap()
        .spec
        .unwrap()
        .annotations
        .unwrap()
        .labels;
    assert_eq!(labels, [("disk".to_string(), "ssd".to_string())].into());
}

#[test]
fn rotating_a_join_token_changes_that_role_only() {
    let m = swarm();
    assert_eq!(
        block_on(join_token(&m, NodeRole::Worker, false)).unwrap(),
        "SWMTKN-1-w"
    );
    let fresh = block_on(join_token(&m, NodeRole::Worker, true)).unwrap();
    assert_ne!(fresh, "SWMTKN-1-w");
    assert!(fresh.starts_with("SWMTKN-1-"), "{fresh}");
    assert_eq!(
        block_on(join_token(&m, NodeRole::Worker, false)).unwrap(),
        fresh
    );
    assert_eq!(
        block_on(join_token(&m, NodeRole::Manager, false)).unwrap(),
        "SWMTKN-1-m"
    );
}

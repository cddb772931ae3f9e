//! The dispatcher on a store without Raft (proposer::Direct): heartbeats, expiry,
//! assignment sets and status reports, as agents see them.

use shoal_proto::{
    Cluster, ClusterSpec, DispatcherConfig, IpamConfig, NetworkAttachment, TaskStatus,
};

use super::*;
use crate::proposer::{Direct, block_on};
use crate::test_swarm::{create, swarm};

fn node_of(m: &Direct, id: &str) -> Node {
    m.store().view(|s| s.node(id).cloned()).expect("the node")
}

fn state_of(m: &Direct, id: &str) -> (NodeState, String) {
    let status = node_of(m, id).status.unwrap_or_default();
    (status.state(), status.message)
}

fn beat(m: &Direct, d: &Dispatcher, id: &str, addr: &str) -> Result<HeartbeatResponse> {
    block_on(heartbeat(
        m,
        d,
        HeartbeatRequest {
            node_id: id.into(),
            description: None,
            addr: addr.into(),
        },
    ))
}

#[test]
fn a_heartbeat_marks_its_node_ready_and_answers_with_peers_and_managers() {
    let (m, d) = (swarm(), Dispatcher::default());
    beat(&m, &d, "w1", "10.0.0.21").unwrap();
    let answer = beat(&m, &d, "w2", "10.0.0.22").unwrap();
    assert_eq!(
        state_of(&m, "w2").0,
        NodeState::Ready,
        "a down node is back"
    );
    assert_eq!(node_of(&m, "w2").status.unwrap().addr, "10.0.0.22");
    // Gossip goes to the other Ready nodes that reported an address.
    let peers: Vec<(&str, &str)> = answer
        .gossip_peers
        .iter()
        .map(|p| (p.node_id.as_str(), p.addr.as_str()))
        .collect();
    assert_eq!(peers, [("w1", "10.0.0.21")]);
    assert_eq!(answer.manager_addrs, ["manager1:2377"]);
    assert_eq!(answer.period_ms, shoal_proto::DEFAULT_HEARTBEAT_MS);
}

#[test]
fn heartbeats_are_refused_off_the_leader_and_from_removed_nodes() {
    let d = Dispatcher::default();
    let mut follower = Direct::leading(2);
    follower.raft_id = 1;
    let e = beat(&follower, &d, "w1", "10.0.0.21").unwrap_err();
    assert!(matches!(e, ManagerError::NoLeader), "{e}");
    let e = beat(&swarm(), &d, "gone", "10.0.0.9").unwrap_err();
    assert!(
        matches!(&e, ManagerError::NotFound(w) if w.contains("shoal swarm leave")),
        "{e}"
    );
}

#[test]
fn a_silent_node_is_marked_down_after_missed_heartbeats_and_a_beating_one_is_not() {
    let (m, d) = (swarm(), Dispatcher::default());
    // A 20 ms period: silence counts after three of them.
    block_on(m.update_with_retry(|s| {
        let mut c: Cluster = s.cluster().cloned().expect("the cluster");
        c.spec = Some(ClusterSpec {
            dispatcher: Some(DispatcherConfig {
                heartbeat_period_ms: 20,
            }),
            ..Default::default()
        });
        Ok(vec![action(StoreActionKind::Update, Object::Cluster(c))])
    }))
    .unwrap();
    let since = Instant::now();
    beat(&m, &d, "w1", "10.0.0.21").unwrap();
    block_on(expire_silent_nodes(&m, &d, since)).unwrap();
    assert_eq!(state_of(&m, "w1").0, NodeState::Ready, "within its grace");
    std::thread::sleep(Duration::from_millis(100));
    beat(&m, &d, "m1", "10.0.0.11").unwrap();
    block_on(expire_silent_nodes(&m, &d, since)).unwrap();
    assert_eq!(
        state_of(&m, "w1"),
        (NodeState::Down, "heartbeat failure".into())
    );
    assert_eq!(state_of(&m, "m1").0, NodeState::Ready);
}

fn task(id: &str, node: &str, state: TaskState, desired: TaskState) -> Task {
    Task {
        id: id.into(),
        node_id: node.into(),
        desired_state: desired as i32,
        status: Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
        networks: vec![NetworkAttachment {
            network_id: "net1".into(),
            addresses: vec![format!("10.0.1.{}/24", id.len() + 2)],
        }],
        ..Default::default()
    }
}

/// The swarm with network net1, two tasks of it on w1 (one stopped for good) and one
/// on w2 that is wanted stopped but still running.
fn with_tasks() -> Direct {
    let m = swarm();
    beat(&m, &Dispatcher::default(), "w1", "10.0.0.21").unwrap();
    beat(&m, &Dispatcher::default(), "w2", "10.0.0.22").unwrap();
    let net = Network {
        id: "net1".into(),
        vni: 4097,
        ipam: vec![IpamConfig {
            subnet: "10.0.1.0/24".into(),
            gateway: "10.0.1.1".into(),
        }],
        ..Default::default()
    };
    create(
        &m,
        vec![
            Object::Network(net),
            Object::Task(task("t1", "w1", TaskState::Running, TaskState::Running)),
            Object::Task(task("t22", "w1", TaskState::Complete, TaskState::Shutdown)),
            Object::Task(task("t333", "w2", TaskState::Running, TaskState::Shutdown)),
        ],
    );
    m
}

#[test]
fn an_assignment_set_has_the_nodes_live_tasks_their_networks_and_who_gossips_there() {
    let m = with_tasks();
    let set = assignments(m.store(), "w1");
    let ids: Vec<&str> = set.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["t1", "t22"],
        "a task stopped for good is sent until it is forgotten"
    );
    assert_eq!(set.networks.len(), 1);
    let peers = &set.network_peers[0];
    let nodes: Vec<&str> = peers.nodes.iter().map(|p| p.node_id.as_str()).collect();
    // w2 still holds an address on net1 (its task is stopping), so it still gossips
    // there; only t1 may publish an endpoint.
    assert_eq!(nodes, ["w1", "w2"]);
    assert_eq!(peers.tasks, ["t1"]);
}

fn report(node: &str, task: &str, state: TaskState) -> (String, Vec<TaskStatusUpdate>) {
    let update = TaskStatusUpdate {
        task_id: task.into(),
        status: Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
    };
    (node.into(), vec![update])
}

#[test]
fn a_node_reports_only_on_its_own_tasks_and_states_never_move_back() {
    let m = with_tasks();
    let state = |id: &str| {
        m.store()
            .view(|s| s.task(id).and_then(|t| t.status.clone()))
            .unwrap()
            .state()
    };
    let (node, updates) = report("w2", "t1", TaskState::Failed);
    let e = block_on(update_task_status(&m, &node, updates)).unwrap_err();
    assert!(
        matches!(&e, ManagerError::FailedPrecondition(w) if w.contains("not assigned to node w2")),
        "{e}"
    );
    let (node, updates) = report("w1", "t1", TaskState::Starting);
    block_on(update_task_status(&m, &node, updates)).unwrap();
    assert_eq!(state("t1"), TaskState::Running, "no step backwards");
    let (node, updates) = report("w1", "t1", TaskState::Complete);
    block_on(update_task_status(&m, &node, updates)).unwrap();
    assert_eq!(state("t1"), TaskState::Complete);
}

#[test]
fn a_node_is_sent_only_the_secrets_of_its_tasks_still_meant_to_run() {
    let m = with_tasks();
    let secret = |id: &str| {
        Object::Secret(shoal_proto::Secret {
            id: id.into(),
            spec: Some(shoal_proto::SecretSpec {
                annotations: Some(shoal_proto::Annotations {
                    name: id.into(),
                    ..Default::default()
                }),
                data: id.as_bytes().to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    create(&m, vec![secret("s-w1"), secret("s-w2"), secret("s-unused")]);
    // t1 runs on w1; t333, on w2, is being stopped.
    for (task, secret) in [("t1", "s-w1"), ("t333", "s-w2")] {
        block_on(m.update_with_retry(|s| {
            let mut t = s.task(task).cloned().unwrap();
            t.spec.get_or_insert_default().container = Some(shoal_proto::ContainerSpec {
                secrets: vec![shoal_proto::SecretReference {
                    secret_id: secret.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            Ok(vec![action(StoreActionKind::Update, Object::Task(t))])
        }))
        .unwrap();
    }
    let sent = |node: &str| -> Vec<String> {
        assignments(m.store(), node)
            .secrets
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(sent("w1"), ["s-w1"]);
    assert!(
        sent("w2").is_empty(),
        "its task is stopping: {:?}",
        sent("w2")
    );
    assert!(sent("m1").is_empty());
}

//! The service operations on a store without Raft (proposer::Direct): what a user sees
//! when two writes meet, and that a refused write leaves the state as it was.

use shoal_proto::{
    EndpointSpec, NetworkSpec, PortConfig, Refusal, ServiceSpec, UpdateServiceRequest,
};

use super::*;
use crate::proposer::{Direct, block_on};

fn spec(name: &str, image: &str, published: u32) -> ServiceSpec {
    ServiceSpec {
        endpoint: (published > 0).then(|| EndpointSpec {
            ports: vec![PortConfig {
                protocol: "tcp".into(),
                target_port: 80,
                published_port: published,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..ServiceSpec::replicated(name, image, 2)
    }
}

fn names(m: &Direct) -> Vec<String> {
    list(m)
        .services
        .iter()
        .map(|s| s.name().to_string())
        .collect()
}

#[test]
fn a_taken_name_or_port_is_refused_and_nothing_is_written() {
    let m = Direct::default();
    block_on(async {
        create(&m, spec("web", "nginx", 8080)).await.unwrap();
        let again = create(&m, spec("web", "httpd", 0)).await.unwrap_err();
        assert!(
            matches!(again, ManagerError::Rejected(Refusal::NameTaken, ref w) if w.contains("service web already exists")),
            "{again:?}"
        );
        let port = create(&m, spec("api", "httpd", 8080)).await.unwrap_err();
        assert!(
            port.to_string()
                .contains("port '8080' is already in use by service 'web'"),
            "{port}"
        );
    });
    assert_eq!(names(&m), ["web"]);
    let web = get(&m, "web").unwrap();
    assert_eq!(
        web.spec.unwrap().task.unwrap().container.unwrap().image,
        "nginx"
    );
}

#[test]
fn an_update_made_against_an_old_version_is_refused() {
    let m = Direct::default();
    let web = block_on(create(&m, spec("web", "nginx", 0))).unwrap();
    let v1 = web.meta.unwrap().version.unwrap().index;
    let request = |image: &str, version: u64| UpdateServiceRequest {
        id_or_name: "web".into(),
        version,
        spec: Some(spec("web", image, 0)),
        rollback: false,
    };
    let updated = block_on(update(&m, request("nginx:2", v1))).unwrap();
    assert_eq!(updated.spec_version, 2, "a new image is a new task spec");
    let stale = block_on(update(&m, request("nginx:3", v1))).unwrap_err();
    assert!(
        matches!(stale, ManagerError::Rejected(Refusal::OutOfSequence, ref w) if w.contains("inspect it again")),
        "{stale:?}"
    );
    let now = get(&m, "web").unwrap();
    assert_eq!(
        now.spec.unwrap().task.unwrap().container.unwrap().image,
        "nginx:2"
    );
    let rolled = block_on(update(
        &m,
        UpdateServiceRequest {
            id_or_name: "web".into(),
            rollback: true,
            ..Default::default()
        },
    ))
    .unwrap();
    assert_eq!(
        rolled.spec.unwrap().task.unwrap().container.unwrap().image,
        "nginx"
    );
    let mut rename = request("nginx", 0);
    rename
        .spec
        .as_mut()
        .unwrap()
        .annotations
        .as_mut()
        .unwrap()
        .name = "www".into();
    let refused = block_on(update(&m, rename)).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("renaming services is not supported"),
        "{refused}"
    );
}

#[test]
fn a_network_in_use_is_not_removed_and_a_removed_service_frees_its_port() {
    let m = Direct::default();
    block_on(async {
        let net = NetworkSpec {
            annotations: Some(Annotations {
                name: "backend".into(),
                ..Default::default()
            }),
            driver: "overlay".into(),
            ..Default::default()
        };
        crate::networks::create(&m, net).await.unwrap();
        let mut web = spec("web", "nginx", 8080);
        web.task.as_mut().unwrap().networks = vec![shoal_proto::NetworkAttachmentConfig {
            target: "backend".into(),
            aliases: vec![],
        }];
        create(&m, web).await.unwrap();
        let in_use = crate::networks::remove(&m, "backend").await.unwrap_err();
        assert!(in_use.to_string().contains("web"), "{in_use}");
        assert_eq!(crate::networks::list(&m).len(), 1);
        remove(&m, "web").await.unwrap();
        create(&m, spec("api", "httpd", 8080)).await.unwrap();
        crate::networks::remove(&m, "backend").await.unwrap();
    });
    assert_eq!(names(&m), ["api"]);
}

#[test]
fn the_leaders_planners_place_a_new_service_through_the_same_seam() {
    use shoal_proto::stored_object::Object;
    use shoal_proto::{
        Node, NodeAvailability, NodeDescription, NodeSpec, NodeState, NodeStatus, Resources,
        StoreActionKind, TaskState,
    };
    let m = Direct::default();
    let node = Node {
        id: "n1".into(),
        spec: Some(NodeSpec {
            availability: NodeAvailability::Active as i32,
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: "worker1".into(),
            resources: Some(Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 1 << 30,
            }),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    block_on(async {
        m.propose(crate::state::store::proposal(vec![action(
            StoreActionKind::Create,
            Object::Node(node),
        )]))
        .await
        .unwrap();
        create(&m, spec("web", "nginx", 0)).await.unwrap();
        for _ in 0..3 {
            crate::leader::reconcile_tasks(&m).await.unwrap();
        }
    });
    let tasks = tasks(&m, "web", "").unwrap().tasks;
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    for t in &tasks {
        assert_eq!(t.node_id, "n1");
        assert_eq!(t.current_state(), TaskState::Assigned);
    }
}

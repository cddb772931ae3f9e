//! Overlay networks, control plane: creation with subnets and VNIs allocated in Raft,
//! the ingress network, listing, inspecting, and removal rules.

mod common;

use std::time::Duration;

use common::{Lab, text, wait_for};

fn inspect(lab: &Lab, node: &str, network: &str) -> serde_json::Value {
    let out = lab.ok(node, &["network", "inspect", network]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

fn allocation(doc: &serde_json::Value) -> (String, String) {
    (
        doc["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string(),
        doc["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn networks_get_unique_ranges_even_across_a_leader_change() {
    let lab = Lab::up("net-raft", 31, 3, 3, "1s");
    let ingress = inspect(&lab, "manager1", "ingress");
    assert_eq!(ingress["Ingress"], true);
    assert_eq!(allocation(&ingress), ("10.0.0.0/24".into(), "4096".into()));

    lab.ok(
        "manager1",
        &["network", "create", "-d", "overlay", "webnet"],
    );
    let webnet = allocation(&inspect(&lab, "manager2", "webnet"));
    assert_eq!(webnet, ("10.0.1.0/24".into(), "4097".into()));

    let leader = lab
        .nodes("manager1")
        .into_iter()
        .find(|n| n.manager_status == "Leader")
        .unwrap()
        .hostname;
    lab.stop(&leader, true);
    let survivor = ["manager1", "manager2", "manager3"]
        .into_iter()
        .find(|m| *m != leader)
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "a network created under the new leader",
        || {
            lab.exec(survivor, &["network", "create", "backnet"])
                .status
                .success()
                .then_some(())
        },
    );
    let backnet = allocation(&inspect(&lab, survivor, "backnet"));
    assert_eq!(backnet, ("10.0.2.0/24".into(), "4098".into()));
    let listed = common::parse_table(&lab.ok(survivor, &["network", "ls"]));
    let mut names: Vec<&str> = listed.iter().map(|r| r["NAME"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["backnet", "ingress", "webnet"]);
    assert!(
        listed
            .iter()
            .all(|r| r["DRIVER"] == "overlay" && r["SCOPE"] == "swarm")
    );
}

#[test]
fn network_options_rules_and_removal() {
    let lab = Lab::up("net-rules", 32, 1, 1, "1s");
    lab.ok("manager1", &["swarm", "leave", "--force"]);
    lab.ok(
        "manager1",
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &lab.ip(1),
            "--default-addr-pool",
            "10.20.0.0/16",
            "--default-addr-pool-mask-length",
            "26",
        ],
    );
    assert_eq!(
        allocation(&inspect(&lab, "manager1", "ingress")).0,
        "10.20.0.0/26"
    );
    lab.ok("manager1", &["network", "create", "pooled"]);
    assert_eq!(
        allocation(&inspect(&lab, "manager1", "pooled")).0,
        "10.20.0.64/26"
    );

    lab.ok(
        "manager1",
        &[
            "network",
            "create",
            "--subnet",
            "10.50.0.0/24",
            "--gateway",
            "10.50.0.254",
            "--attachable",
            "--opt",
            "mtu=1400",
            "--label",
            "team=a",
            "custom",
        ],
    );
    let custom = inspect(&lab, "manager1", "custom");
    assert_eq!(custom["IPAM"]["Config"][0]["Gateway"], "10.50.0.254");
    assert_eq!(custom["Attachable"], true);
    assert_eq!(custom["Options"]["mtu"], "1400");
    assert_eq!(custom["Labels"]["team"], "a");

    let refused: &[(&[&str], &str)] = &[
        (
            &["network", "create", "--subnet", "10.50.0.0/16", "other"],
            "overlaps with network custom",
        ),
        (&["network", "create", "custom"], "already exists"),
        (
            &["network", "create", "-d", "bridge", "b"],
            "use -d overlay",
        ),
        (
            &["network", "create", "--subnet", "10.60.0.5/24", "c"],
            "did you mean 10.60.0.0/24",
        ),
        (&["network", "create", "--opt", "mtu=9", "d"], "invalid mtu"),
        (&["swarm", "init"], "already part of a swarm"),
        (
            &[
                "service",
                "create",
                "--name",
                "x",
                "--network",
                "nosuch",
                "shoal/demo-web",
            ],
            "network nosuch not found",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "y",
                "--network",
                "ingress",
                "shoal/demo-web",
            ],
            "ingress network",
        ),
    ];
    for (args, why) in refused {
        lab.refused("manager1", args, why);
    }
    assert_eq!(
        common::parse_table(&lab.ok("manager1", &["network", "ls"])).len(),
        3
    );

    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--network",
            "custom",
            "shoal/demo-web",
        ],
    );
    let out = lab.exec("manager1", &["network", "rm", "custom"]);
    assert!(
        text(&out).contains("in use by service web"),
        "{}",
        text(&out)
    );
    lab.ok("manager1", &["service", "rm", "web"]);
    lab.ok("manager1", &["network", "rm", "custom"]);
    let out = lab.exec("manager1", &["network", "inspect", "custom"]);
    assert!(
        text(&out).contains("network custom not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn address_exhaustion_leaves_tasks_pending_with_a_clear_error() {
    let lab = Lab::up("net-full", 33, 2, 1, "1s");
    lab.ok(
        "manager1",
        &["network", "create", "--subnet", "10.70.0.0/29", "tiny"],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "7",
            "--network",
            "tiny",
            "shoal/demo-web",
        ],
    );
    // A /29 has 6 host addresses; the gateway and the service's VIP take two: 4 tasks fit.
    wait_for(
        Duration::from_secs(20),
        "4 running and 3 pending tasks",
        || {
            let rows = lab.tasks("web");
            let running = rows
                .iter()
                .filter(|t| t["CURRENT STATE"].starts_with("Running"))
                .count();
            let pending: Vec<_> = rows
                .iter()
                .filter(|t| t["CURRENT STATE"].starts_with("Pending"))
                .filter(|t| {
                    t["ERROR"].contains("no IP address left in network tiny (10.70.0.0/29)")
                })
                .collect();
            (running == 4 && pending.len() == 3).then_some(())
        },
    );
    // Scaled to what fits, the service converges.
    lab.ok("manager1", &["service", "scale", "-d", "web=4"]);
    lab.wait_running("web", 4);
}

#[test]
fn verbose_inspect_lists_peers_and_each_services_task_addresses() {
    let lab = Lab::up("net-verb", 34, 3, 1, "1s");
    lab.ok(
        "manager1",
        &["network", "create", "--subnet", "10.71.0.0/24", "webnet"],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "--network",
            "webnet",
            "shoal/demo-web",
        ],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["network", "inspect", "--verbose", "webnet"]))
            .unwrap();
    let tasks = doc[0]["Services"]["web"]["Tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "{doc}");
    let mut ips: Vec<&str> = tasks
        .iter()
        .map(|t| t["EndpointIP"].as_str().unwrap())
        .collect();
    ips.sort_unstable();
    // The service's VIP took the first address.
    assert_eq!(doc[0]["Services"]["web"]["VIP"], "10.71.0.2", "{doc}");
    assert_eq!(ips, ["10.71.0.3", "10.71.0.4", "10.71.0.5"]);
    assert!(
        tasks.iter().all(|t| t["Info"]["Host IP"]
            .as_str()
            .unwrap()
            .starts_with("10.239.34.")),
        "{doc}"
    );
    assert_eq!(doc[0]["Peers"].as_array().unwrap().len(), 3, "{doc}");
    // Without --verbose, docker's plain shape.
    let plain: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["network", "inspect", "webnet"])).unwrap();
    assert!(plain[0].get("Services").is_none());
}

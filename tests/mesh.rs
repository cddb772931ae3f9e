//! The routing mesh and service VIPs: published ports answered on every node's address,
//! spread over every running task; VIPs from inside tasks; UDP; backends that follow
//! scaling, node loss, rolling updates and agent crashes without failed requests.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::load::{Load, hello, spread};
use common::{Lab, text, wait_for, words};

/// The hostnames of the running tasks of `service` (a process task's is its short ID).
fn hostnames(lab: &Lab, service: &str, n: usize) -> BTreeSet<String> {
    lab.wait_running(service, n)
        .into_iter()
        .map(|(id, _)| id[..12].to_string())
        .collect()
}

/// Waits until requests to every address of `nodes` on `port` all succeed and reach
/// exactly the hosts in `want`; panics with what was seen otherwise.
fn settle(lab: &Lab, nodes: &[u32], port: u16, want: &BTreeSet<String>) {
    let start = std::time::Instant::now();
    loop {
        let mut seen = BTreeSet::new();
        let mut failures = vec![];
        for &i in nodes {
            let (hosts, f) = spread(&format!("{}:{port}", lab.ip(i)), 20);
            seen.extend(hosts);
            failures.extend(f);
        }
        if failures.is_empty() && &seen == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port {port} did not settle on {want:?}: reached {seen:?}, failures {failures:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the node's load balancer publishes nothing: no nftables table, or no eBPF
/// frontend in its pinned map.
fn nothing_published(lab: &Lab, node: &str, engine: &str) -> bool {
    let ns = lab.netns(node);
    if is_ebpf(engine) {
        // The agent's pins sit in one directory per map layout (v1, v2, ...).
        let layout = std::fs::read_dir(format!("/sys/fs/bpf/shoal/{ns}"))
            .ok()
            .and_then(|mut dirs| dirs.next()?.ok());
        let Some(layout) = layout else {
            return false;
        };
        let out = Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(layout.path().join("FRONTENDS"))
            .output()
            .unwrap();
        return out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "[]";
    }
    !Command::new("ip")
        .args([
            "netns", "exec", &ns, "nft", "list", "table", "ip", "shoal_lb",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// The eBPF engine, attached through tcx links or (`ebpf-tc`) as classic TC filters, as
/// on kernels before 6.6.
fn is_ebpf(engine: &str) -> bool {
    engine.starts_with("ebpf")
}

/// A lab of `nodes` whose daemons balance with `engine` (ebpf, ebpf-tc or nftables); with
/// ebpf, the test makes sure the programs really run (no fallback to nftables), attached
/// as asked.
fn mesh_lab(name: &str, net: u8, nodes: u32, engine: &str) -> Lab {
    let (base, attach, suffix) = match engine {
        "ebpf-tc" => ("ebpf", "tc", "t"),
        "ebpf" => ("ebpf", "auto", "e"),
        _ => ("nftables", "auto", "n"),
    };
    let name = format!("{name}-{suffix}");
    let lab = Lab::up_full(
        &name,
        net,
        nodes,
        1,
        "1s",
        "process",
        &[],
        &["--lb-engine", base, "--lb-attach", attach],
    );
    for i in 0..nodes {
        let node = if i == 0 {
            "manager1".to_string()
        } else {
            format!("worker{i}")
        };
        let log = std::fs::read_to_string(lab.node(&node).log()).unwrap();
        assert!(
            log.contains(&format!("engine=\"{base}\"")),
            "{node} does not run the {base} engine:\n{log}"
        );
    }
    if attach == "tc" {
        let lb = lab.ok("manager1", &["debug", "lb"]);
        assert!(lb.contains("Attach mode: tc (clsact"), "{lb}");
        // The mesh's program sits on lo as a direct-action filter, not a tcx link.
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.netns("manager1"),
                "tc",
                "filter",
                "show",
                "dev",
                "lo",
                "ingress",
            ])
            .output()
            .unwrap();
        let filters = text(&out);
        assert!(
            filters.contains("direct-action") && filters.contains("mesh_in"),
            "{filters}"
        );
    }
    lab
}

/// Runs a scenario once per engine, each on its own lab subnet.
macro_rules! on_both_engines {
    ($($scenario:ident: $net:literal),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn ebpf() {
                super::$scenario("ebpf", $net);
            }
            #[test]
            fn nftables() {
                super::$scenario("nftables", $net + 10);
            }
        }
    )*};
}

/// Runs a scenario with the eBPF engine attached as classic TC filters (forced here; the
/// default on kernels before 6.6).
macro_rules! with_classic_tc {
    ($($scenario:ident: $net:literal),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn ebpf_tc() {
                super::super::$scenario("ebpf-tc", $net);
            }
        }
    )*};
}

mod classic_tc {
    with_classic_tc! {
        published_ports_answer_on_every_node_and_reach_every_task: 107,
        backends_follow_scaling_and_node_loss_and_removal_closes_the_port: 108,
        rolling_updates_and_agent_crashes_drop_no_requests: 109,
    }
}

on_both_engines! {
    published_ports_answer_on_every_node_and_reach_every_task: 61,
    a_udp_port_is_published_through_the_mesh: 62,
    backends_follow_scaling_and_node_loss_and_removal_closes_the_port: 63,
    published_ports_are_unique_and_change_live: 64,
    rolling_updates_and_agent_crashes_drop_no_requests: 65,
    host_mode_ports_open_only_where_a_task_runs: 66,
}

fn published_ports_answer_on_every_node_and_reach_every_task(engine: &str, net: u8) {
    let lab = mesh_lab("mw", net, 3, engine);
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok(
        "manager1",
        &words("service create --name web --replicas 5 -p 8080:80 --network app shoal/demo-web"),
    );
    let want = hostnames(&lab, "web", 5);
    let ls = lab.ok("manager1", &["service", "ls"]);
    assert!(ls.contains("*:8080->80/tcp"), "{ls}");
    // The mesh may take a moment to learn every backend; then it must be perfect.
    settle(&lab, &[1, 2, 3], 8080, &want);
    let mut reached = BTreeSet::new();
    for i in 1..=3 {
        let (hosts, failures) = spread(&format!("{}:8080", lab.ip(i)), 50);
        assert!(failures.is_empty(), "node {i}: {failures:?}");
        reached.extend(hosts);
    }
    assert_eq!(reached, want, "requests through the mesh reach all 5 tasks");

    // A client on the node itself reaches the port at the node's address and at
    // localhost, as on a Swarm node.
    let local = |addr: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.netns("worker1"),
                "curl",
                "-s",
                "--max-time",
                "3",
            ])
            .arg(format!("http://{addr}:8080/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        local(&lab.ip(2)).starts_with("Hello from "),
        "worker1 to itself"
    );
    assert!(
        local("127.0.0.1").starts_with("Hello from "),
        "worker1 to localhost"
    );

    // `shoal debug lb` on a node shows the port, its backends and (ebpf) what they carried.
    let status = lab.ok("worker1", &["debug", "lb"]);
    let base = if is_ebpf(engine) { "ebpf" } else { "nftables" };
    assert!(status.contains(&format!("Engine: {base}\n")), "{status}");
    let rows = common::parse_table(&common::lb_table(&status));
    let port = rows
        .iter()
        .find(|r| r["FRONTEND"] == "*:8080/tcp")
        .unwrap_or_else(|| panic!("no row for 8080: {status}"));
    let backends = rows
        .iter()
        .filter(|r| r["BACKEND"].ends_with(":80"))
        .count();
    assert_eq!(backends, 5, "{status}");
    if is_ebpf(engine) {
        let connections: u64 = port["CONNECTIONS"].parse().unwrap();
        assert!(
            connections >= 50,
            "50 requests went through worker1: {status}"
        );
    } else {
        assert_eq!(port["CONNECTIONS"], "-", "{status}");
    }

    // East-west: from inside a task, the service's name is its VIP, and the VIP leads
    // to every replica.
    let (id, node) = lab.running("web").remove(0);
    let ns = lab.task_ns(&node, &id);
    let vip = lab.vip("web");
    let mut via_vip = BTreeSet::new();
    for _ in 0..60 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "curl",
                "-s",
                "--max-time",
                "3",
                "http://web/",
            ])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        let host = body.trim().strip_prefix("Hello from ").map(str::to_string);
        via_vip.insert(host.unwrap_or_else(|| panic!("curl web from a task: {}", text(&out))));
    }
    assert_eq!(via_vip, want, "curl web (VIP {vip}) reaches every replica");
}

fn a_udp_port_is_published_through_the_mesh(engine: &str, net: u8) {
    let lab = mesh_lab("mu", net, 2, engine);
    // A UDP service that says who it is: dnsmasq answering `who TXT` with its hostname.
    lab.ok(
        "manager1",
        &[
            "service", "create", "--name", "who", "--replicas", "2",
            "--replicas-max-per-node", "1",
            "-p", "published=8053,target=53,protocol=udp",
            "shoal/demo-web", "sh", "-c",
            "exec dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file= --port=53 --txt-record=who,$(hostname)",
        ],
    );
    let want = hostnames(&lab, "who", 2);
    let ask = |i: u32| {
        let out = Command::new("dig")
            .args([
                "+short",
                "+tries=1",
                "+time=2",
                "-p",
                "8053",
                &format!("@{}", lab.ip(i)),
                "who",
                "TXT",
            ])
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        match answer.trim().trim_matches('"') {
            "" => text(&out),
            host => host.to_string(),
        }
    };
    wait_for(
        Duration::from_secs(20),
        "who to answer on both nodes",
        || (want.contains(&ask(1)) && want.contains(&ask(2))).then_some(()),
    );
    let mut seen = BTreeSet::new();
    for n in 0..40 {
        let answer = ask(1 + n % 2);
        assert!(
            want.contains(&answer),
            "query {n} through node {}: {answer:?}",
            1 + n % 2
        );
        seen.insert(answer);
    }
    assert_eq!(seen, want, "UDP queries are spread over both tasks");
}

fn backends_follow_scaling_and_node_loss_and_removal_closes_the_port(engine: &str, net: u8) {
    let lab = mesh_lab("ms", net, 3, engine);
    lab.ok(
        "manager1",
        &words("service create --name web --replicas 5 -p 8080:80 shoal/demo-web"),
    );
    settle(&lab, &[1, 2, 3], 8080, &hostnames(&lab, "web", 5));
    for n in [2usize, 6] {
        lab.ok("manager1", &["service", "scale", &format!("web={n}")]);
        let want = hostnames(&lab, "web", n);
        settle(&lab, &[1, 2, 3], 8080, &want);
        for i in 1..=3 {
            let (hosts, failures) = spread(&format!("{}:8080", lab.ip(i)), 30);
            assert!(failures.is_empty(), "after scaling to {n}: {failures:?}");
            assert!(
                hosts.is_subset(&want),
                "a request went to a removed task: {hosts:?}"
            );
        }
    }

    // worker2 is lost: its tasks are replaced, and the mesh forgets them.
    lab.stop("worker2", true);
    let want = wait_for(
        Duration::from_secs(30),
        "web's tasks to leave worker2",
        || {
            let running = lab.running("web");
            (running.len() == 6 && running.iter().all(|(_, node)| node != "worker2")).then(|| {
                running
                    .iter()
                    .map(|(id, _)| id[..12].to_string())
                    .collect::<BTreeSet<_>>()
            })
        },
    )
    .0;
    settle(&lab, &[1, 2], 8080, &want);

    lab.ok("manager1", &["service", "rm", "web"]);
    wait_for(
        Duration::from_secs(15),
        "the port to close on every node",
        || {
            let closed = (1..=2).all(|i| hello(&format!("{}:8080", lab.ip(i))).is_err());
            let clean = ["manager1", "worker1"]
                .iter()
                .all(|n| nothing_published(&lab, n, engine));
            (closed && clean).then_some(())
        },
    );
}

fn published_ports_are_unique_and_change_live(engine: &str, net: u8) {
    let lab = mesh_lab("mp", net, 2, engine);
    lab.ok(
        "manager1",
        &words("service create --name web --replicas 2 -p 8080:80 shoal/demo-web"),
    );
    lab.refused(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "api",
            "-p",
            "8080:80",
            "shoal/demo-web",
        ],
        "port '8080' is already in use by service 'web'",
    );
    // A port without a number gets one from 30000-32767.
    lab.ok(
        "manager1",
        &words("service create --name api -p 80 shoal/demo-web"),
    );
    let ls = lab.ok("manager1", &["service", "ls"]);
    assert!(ls.contains("*:30000->80/tcp"), "{ls}");
    settle(&lab, &[1, 2], 30000, &hostnames(&lab, "api", 1));

    // Move web from 8080 to 9090 while it runs.
    lab.ok(
        "manager1",
        &words("service update --publish-rm 80 --publish-add 9090:80 web"),
    );
    let want = hostnames(&lab, "web", 2);
    settle(&lab, &[1, 2], 9090, &want);
    wait_for(Duration::from_secs(15), "8080 to close", || {
        (1..=2)
            .all(|i| hello(&format!("{}:8080", lab.ip(i))).is_err())
            .then_some(())
    });
    // 8080 is free again.
    lab.ok(
        "manager1",
        &["service", "update", "--publish-add", "8080:80", "api"],
    );
    settle(&lab, &[1, 2], 8080, &hostnames(&lab, "api", 1));
}

fn host_mode_ports_open_only_where_a_task_runs(engine: &str, net: u8) {
    let lab = mesh_lab("mh", net, 2, engine);
    lab.ok(
        "manager1",
        &words("service create --name h -p published=8081,target=80,mode=host shoal/demo-web"),
    );
    let (id, node) = lab.wait_running("h", 1).remove(0);
    let (here, there) = if node == "manager1" { (1, 2) } else { (2, 1) };
    let want = BTreeSet::from([id[..12].to_string()]);
    settle(&lab, &[here], 8081, &want);
    assert!(
        hello(&format!("{}:8081", lab.ip(there))).is_err(),
        "a node without the task answered on its host-mode port"
    );
    // One task per node can hold the port: a third replica on two nodes waits.
    lab.ok("manager1", &words("service scale -d h=3"));
    wait_for(
        Duration::from_secs(20),
        "a task pending on the port",
        || {
            lab.tasks("h")
                .iter()
                .any(|t| t["ERROR"].contains("host-mode port already in use on 2 nodes"))
                .then_some(())
        },
    );
}

fn rolling_updates_and_agent_crashes_drop_no_requests(engine: &str, net: u8) {
    let lab = mesh_lab("mr", net, 3, engine);
    lab.ok("manager1", &words("service create --name web --replicas 3 -p 8080:80 --update-parallelism 1 --update-delay 1s shoal/demo-web"));
    settle(&lab, &[1, 2, 3], 8080, &hostnames(&lab, "web", 3));

    // kill -9 the agent on the node receiving the traffic, then start it again.
    let load = Load::start(&[format!("{}:8080", lab.ip(2))]);
    std::thread::sleep(Duration::from_secs(1));
    lab.stop("worker1", true);
    std::thread::sleep(Duration::from_secs(3));
    lab.start("worker1");
    lab.wait_ready("worker1", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(12));
    load.finish_without_failures("worker1's agent killed and restarted");

    // A rolling update, one task at a time, under load through every node.
    let load = Load::start(
        &(1..=3)
            .map(|i| format!("{}:8080", lab.ip(i)))
            .collect::<Vec<_>>(),
    );
    lab.ok("manager1", &["service", "update", "--force", "web"]);
    lab.wait_update_completed("web", Duration::from_mins(1));
    load.finish_without_failures("a rolling update");
}

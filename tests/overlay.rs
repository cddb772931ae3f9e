//! Overlay networks, data plane: tasks on different nodes reach each other over VXLAN,
//! networks are isolated, remote endpoints follow gossip (and go when a node does), the
//! reconciler repairs drift, an agent restart keeps connections, and bad gossip is
//! dropped and counted.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Lab, addr_of, text, wait_for};

/// Runs a command inside a network namespace.
fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn sh(ns: &str, script: &str) -> Output {
    in_ns(ns, &["sh", "-c", script])
}

impl Lab {
    fn sandbox_ns(&self, node: &str, vni: &str) -> String {
        format!("{}-ov{vni}", self.netns(node))
    }

    fn vni(&self, network: &str) -> String {
        let out = self.ok("manager1", &["network", "inspect", network]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        doc[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a service of `replicas` demo web servers on `network`, one per node.
    fn web(&self, name: &str, network: &str, replicas: usize) -> Vec<(String, String)> {
        self.ok(
            "manager1",
            &[
                "service",
                "create",
                "--name",
                name,
                "--network",
                network,
                "--replicas",
                &replicas.to_string(),
                "--replicas-max-per-node",
                "1",
                "shoal/demo-web",
            ],
        );
        self.wait_running(name, replicas)
    }
}

fn link_detail(ns: &str, ifname: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "dev", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Remote entries of the vxlan device: (MAC, VTEP).
fn fdb(ns: &str) -> Vec<(String, String)> {
    let out = Command::new("bridge")
        .args(["-n", ns, "fdb", "show", "dev", "vxlan0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let dst = w.iter().position(|x| *x == "dst")?;
            Some((w[0].to_string(), w.get(dst + 1)?.to_string()))
        })
        .collect()
}

fn neighbours(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "neigh", "show", "dev", "vxlan0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pings(ns: &str, ip: Ipv4Addr) -> bool {
    in_ns(
        ns,
        &["busybox", "ping", "-c", "1", "-W", "2", &ip.to_string()],
    )
    .status
    .success()
}

fn http_get(ns: &str, ip: Ipv4Addr) -> String {
    let out = sh(
        ns,
        &format!("timeout 5 busybox wget -q -O - http://{ip}/ 2>/dev/null"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn replicas_on_two_nodes_reach_each_other_over_vxlan() {
    let lab = Lab::up("ov-reach", 41, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "-d", "overlay", "app"]);
    let vni = lab.vni("app");
    let tasks = lab.web("web", "app", 2);
    let (a, b) = (&tasks[0], &tasks[1]);
    assert_ne!(a.1, b.1, "one replica per node");
    let (ns_a, ns_b) = (lab.task_ns(&a.1, &a.0), lab.task_ns(&b.1, &b.0));
    let ip_b = wait_for(Duration::from_secs(10), "task b's address", || {
        addr_of(&ns_b, "eth0")
    })
    .0;
    let ip_a = addr_of(&ns_a, "eth0").expect("task a's address");

    // The MAC is derived from the IP, the MTU leaves room for VXLAN's 50 bytes.
    let eth0 = link_detail(&ns_b, "eth0");
    let o = ip_b.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert!(eth0.contains(&mac), "{eth0}");
    assert!(eth0.contains("mtu 1450"), "{eth0}");
    let vxlan = link_detail(&lab.sandbox_ns(&a.1, &vni), "vxlan0");
    assert!(
        vxlan.contains(&format!("vxlan id {vni} "))
            && vxlan.contains("dstport 4789")
            && vxlan.contains("nolearning"),
        "{vxlan}"
    );

    // ICMP and TCP across nodes, once gossip has told each side about the other.
    wait_for(Duration::from_secs(10), "ping across nodes", || {
        pings(&ns_a, ip_b).then_some(())
    });
    let page = http_get(&ns_a, ip_b);
    assert!(page.contains(&b.0[..12]), "task b's page: {page:?}");
    assert!(pings(&ns_b, ip_a));

    // On the wire: UDP 4789 between the nodes, carrying the network's VNI.
    let fabric = lab.record().fabric_ns.clone();
    let capture = std::thread::spawn(move || {
        in_ns(
            &fabric,
            &[
                "timeout", "8", "tcpdump", "-ni", "any", "-c", "2", "-v", "udp", "port", "4789",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        pings(&ns_a, ip_b);
    }
    let captured = capture.join().unwrap();
    let dump = text(&captured);
    assert!(dump.contains(&format!("vni {vni}")), "capture:\n{dump}");
    assert!(
        dump.contains(&format!("{ip_a} > {ip_b}")),
        "capture:\n{dump}"
    );

    // Egress through the gateway bridge, masqueraded as the node's own address.
    let listener_ns = lab.netns(&b.1);
    let node_b_ip: Ipv4Addr = lab
        .ip(if b.1 == "manager1" { 1 } else { 2 })
        .parse()
        .unwrap();
    let server = common::within(&listener_ns, move || {
        TcpListener::bind(SocketAddr::from((node_b_ip, 9099))).unwrap()
    });
    let accepted = std::thread::spawn(move || server.accept().map(|(_, peer)| peer));
    let sent = sh(
        &ns_a,
        &format!("echo hello | timeout 5 busybox nc {node_b_ip} 9099"),
    );
    assert!(sent.status.success(), "egress: {}", text(&sent));
    let peer = accepted.join().unwrap().unwrap();
    let node_a_ip = lab.ip(if a.1 == "manager1" { 1 } else { 2 });
    assert_eq!(
        peer.ip().to_string(),
        node_a_ip,
        "masqueraded as task a's node"
    );
}

#[test]
fn overlay_networks_are_isolated() {
    let lab = Lab::up("ov-iso", 42, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "front"]);
    lab.ok(
        "manager1",
        &["network", "create", "--opt", "mtu=1400", "back"],
    );
    let front = lab.web("front-web", "front", 2);
    let back = lab.web("back-web", "back", 2);
    let ns_front = lab.task_ns(&front[0].1, &front[0].0);
    let peer_front = lab.task_ns(&front[1].1, &front[1].0);
    let ip_front = wait_for(Duration::from_secs(10), "an address", || {
        addr_of(&peer_front, "eth0")
    })
    .0;
    wait_for(Duration::from_secs(10), "same-network reachability", || {
        pings(&ns_front, ip_front).then_some(())
    });
    for (id, node) in &back {
        let ns = lab.task_ns(node, id);
        assert!(
            link_detail(&ns, "eth0").contains("mtu 1400"),
            "--opt mtu is honoured"
        );
        let ip = addr_of(&ns, "eth0").expect("back address");
        assert!(!pings(&ns_front, ip), "{ip} on another network answered");
        assert!(http_get(&ns_front, ip).is_empty());
    }

    // A network's namespace on a node goes with its last local task.
    let (vni_front, vni_back) = (lab.vni("front"), lab.vni("back"));
    let exists = |ns: String| std::path::Path::new("/run/netns").join(ns).exists();
    assert!(exists(lab.sandbox_ns("manager1", &vni_front)));
    lab.ok("manager1", &["service", "rm", "front-web"]);
    wait_for(Duration::from_secs(15), "front's sandboxes removed", || {
        ["manager1", "worker1"]
            .iter()
            .all(|n| !exists(lab.sandbox_ns(n, &vni_front)))
            .then_some(())
    });
    assert!(exists(lab.sandbox_ns("manager1", &vni_back)));
    assert!(exists(lab.sandbox_ns("worker1", &vni_back)));
}

#[test]
fn a_departed_node_leaves_no_endpoints_behind() {
    let lab = Lab::up("ov-leave", 43, 3, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    let vni = lab.vni("app");
    let tasks = lab.web("web", "app", 3);
    let vtep = |node: &str| {
        lab.ip(match node {
            "manager1" => 1,
            "worker1" => 2,
            _ => 3,
        })
    };
    let task_ip = |node: &str| {
        let (id, _) = tasks.iter().find(|t| t.1 == node).expect("a task per node");
        let ns = lab.task_ns(node, id);
        wait_for(Duration::from_secs(10), "a task address", || {
            addr_of(&ns, "eth0")
        })
        .0
        .to_string()
    };
    let (ip1, ip2) = (task_ip("worker1"), task_ip("worker2"));
    let sandbox = lab.sandbox_ns("manager1", &vni);
    let programmed = |node: &str, ip: &str| {
        fdb(&sandbox).iter().any(|e| e.1 == vtep(node))
            || neighbours(&sandbox).contains(&format!("{ip} "))
    };
    wait_for(
        Duration::from_secs(10),
        "both remote nodes programmed",
        || (programmed("worker1", &ip1) && programmed("worker2", &ip2)).then_some(()),
    );

    // A node leaving on purpose says so: its entries go at once.
    lab.ok("worker1", &["swarm", "leave"]);
    let ((), took) = wait_for(Duration::from_secs(10), "worker1's entries to go", || {
        (!programmed("worker1", &ip1)).then_some(())
    });
    eprintln!("worker1's entries went {took:?} after it left");

    // A node that dies is found by the failure detector.
    lab.stop("worker2", true);
    let ((), took) = wait_for(Duration::from_secs(10), "worker2's entries to go", || {
        (!programmed("worker2", &ip2)).then_some(())
    });
    eprintln!("worker2's entries went {took:?} after it died");
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn links(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_reconciler_repairs_drift_and_a_restarted_agent_keeps_connections() {
    let lab = Lab::up("ov-heal", 44, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    let vni = lab.vni("app");
    let tasks = lab.web("web", "app", 2);
    let on = |node: &str| tasks.iter().find(|t| t.1 == node).unwrap().0.clone();
    let (a, b) = (on("manager1"), on("worker1"));
    let ns_a = lab.task_ns("manager1", &a);
    let ns_b = lab.task_ns("worker1", &b);
    let ip_b = wait_for(Duration::from_secs(10), "task b's address", || {
        addr_of(&ns_b, "eth0")
    })
    .0;
    wait_for(Duration::from_secs(10), "ping across nodes", || {
        pings(&ns_a, ip_b).then_some(())
    });

    // Drift: the FDB and neighbour entries for task b, deleted by hand, come back.
    let sandbox = lab.sandbox_ns("manager1", &vni);
    let o = ip_b.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let vtep = lab.ip(2);
    let del = Command::new("bridge")
        .args([
            "-n", &sandbox, "fdb", "del", &mac, "dev", "vxlan0", "dst", &vtep, "self",
        ])
        .output()
        .unwrap();
    assert!(del.status.success(), "{}", text(&del));
    let del = Command::new("ip")
        .args([
            "-n",
            &sandbox,
            "neigh",
            "del",
            &ip_b.to_string(),
            "dev",
            "vxlan0",
        ])
        .output()
        .unwrap();
    assert!(del.status.success(), "{}", text(&del));
    assert!(!fdb(&sandbox).contains(&(mac.clone(), vtep.clone())));
    let ((), took) = wait_for(Duration::from_secs(10), "the fdb entry restored", || {
        (fdb(&sandbox).contains(&(mac.clone(), vtep.clone()))
            && neighbours(&sandbox).contains(&format!("{ip_b} ")))
        .then_some(())
    });
    eprintln!("the reconciler restored the entries in {took:?}");
    assert!(pings(&ns_a, ip_b));

    // So is the task's own address, removed by hand.
    let del = Command::new("ip")
        .args([
            "-n",
            &ns_b,
            "addr",
            "del",
            &format!("{ip_b}/24"),
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(del.status.success(), "{}", text(&del));
    wait_for(Duration::from_secs(10), "task b's address restored", || {
        (addr_of(&ns_b, "eth0") == Some(ip_b)).then_some(())
    });
    wait_for(Duration::from_secs(10), "ping after the repair", || {
        pings(&ns_a, ip_b).then_some(())
    });

    // A TCP connection from a to b, carrying a line every 200 ms.
    let received = lab.dir().join("received.txt");
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &ns_b, "busybox", "nc", "-l", "-p", "7000"])
        // nc ends the connection when its stdin ends: keep it open.
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&received).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut talker = Command::new("ip")
        .args(["netns", "exec", &ns_a, "sh", "-c"])
        .arg(format!(
            "while :; do echo tick; sleep 0.2; done | busybox nc {ip_b} 7000"
        ))
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(5), "the first lines", || {
        (count_lines(&received) > 2).then_some(())
    });

    // The agent on b's node crashes and comes back: it adopts its task and devices.
    lab.stop("worker1", true);
    lab.start("worker1");
    lab.wait_ready("worker1", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let before = count_lines(&received);
    std::thread::sleep(Duration::from_secs(2));
    let after = count_lines(&received);
    let alive = listener.try_wait().unwrap().is_none() && talker.try_wait().unwrap().is_none();
    let _ = talker.kill();
    let _ = listener.kill();
    let _ = talker.wait();
    let _ = listener.wait();
    assert!(alive, "the connection broke across the agent restart");
    assert!(
        after > before,
        "no lines after the restart ({before} -> {after})"
    );
    assert_eq!(lab.running("web").len(), 2);
    assert!(
        lab.running("web").iter().any(|t| t.0 == b),
        "task b was adopted"
    );

    // No duplicates: one veth per task, one gateway bridge, no staging vxlan left.
    let node_links = links(&lab.netns("worker1"));
    assert_eq!(
        node_links.iter().filter(|l| *l == "shoal_gwbridge").count(),
        1
    );
    assert!(
        !node_links.iter().any(|l| l.starts_with("shvx")),
        "{node_links:?}"
    );
    assert_eq!(
        node_links.iter().filter(|l| l.starts_with("gw")).count(),
        1,
        "{node_links:?}"
    );
    let sandbox_links = links(&lab.sandbox_ns("worker1", &vni));
    let veths = sandbox_links
        .iter()
        .filter(|l| l.starts_with("veth"))
        .count();
    assert_eq!(veths, 1, "{sandbox_links:?}");
    let mut task_links = links(&ns_b);
    task_links.sort();
    assert_eq!(task_links, ["eth0", "eth1", "lo"]);
}

/// `shoal debug gossip`'s drop counters: (bad key, malformed).
fn dropped(lab: &Lab, node: &str) -> (u64, u64) {
    let out = lab.ok(node, &["debug", "gossip"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("Dropped:"))
        .unwrap_or_else(|| panic!("no Dropped line in:\n{out}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn bad_gossip_is_dropped_and_counted() {
    let lab = Lab::up("ov-gossip", 45, 2, 1, "1s");
    let target: SocketAddr = format!("{}:7946", lab.ip(1)).parse().unwrap();
    assert_eq!(dropped(&lab, "manager1"), (0, 0));

    let mut key = vec![0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut key).unwrap();
    let impostor = shoal_agent::gossip::crypto::Keyring::new(
        &[shoal_proto::NetworkKey {
            id: 1,
            key,
            created_unix_nanos: 0,
        }],
        1,
    );
    let forged = impostor.seal(b"a member list from an impostor").unwrap();
    common::within(&lab.netns("worker1"), move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"garbage, not gossip at all", target).unwrap();
        s.send_to(&[0u8; 300], target).unwrap();
        s.send_to(&forged, target).unwrap();
    });
    let (counts, _) = wait_for(Duration::from_secs(5), "the drops counted", || {
        let d = dropped(&lab, "manager1");
        (d.0 >= 1 && d.1 >= 2).then_some(d)
    });
    assert_eq!(counts, (1, 2));

    // The agent carries on: membership holds and a service still spans both nodes.
    let out = lab.ok("manager1", &["debug", "gossip"]);
    assert!(out.contains("Members: 1"), "{out}");
    lab.ok("manager1", &["network", "create", "app"]);
    let tasks = lab.web("web", "app", 2);
    let ns = lab.task_ns(&tasks[0].1, &tasks[0].0);
    let peer = lab.task_ns(&tasks[1].1, &tasks[1].0);
    let ip = wait_for(Duration::from_secs(10), "an address", || {
        addr_of(&peer, "eth0")
    })
    .0;
    wait_for(Duration::from_secs(10), "ping across nodes", || {
        pings(&ns, ip).then_some(())
    });
}

/// The key `shoal debug gossip` says the node seals with.
fn sealing_key(lab: &Lab, node: &str) -> u32 {
    let out = lab.ok(node, &["debug", "gossip"]);
    out.lines()
        .find_map(|l| l.split("(sealing with ").nth(1))
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no sealing key in:\n{out}"))
}

#[test]
fn gossip_keys_rotate_without_dropping_a_datagram() {
    let lab = Lab::up_env(
        "ov-keys",
        46,
        2,
        1,
        "1s",
        "process",
        &[("SHOAL_NETWORK_KEY_ROTATION_SECS", "4")],
    );
    lab.ok("manager1", &["network", "create", "app"]);
    let first = lab.web("web", "app", 2);
    let ((), took) = wait_for(Duration::from_secs(40), "three rotations", || {
        (sealing_key(&lab, "manager1") >= 4 && sealing_key(&lab, "worker1") >= 4).then_some(())
    });
    eprintln!("three rotations took {took:?}");
    for node in ["manager1", "worker1"] {
        assert_eq!(dropped(&lab, node), (0, 0), "{node} dropped datagrams");
        assert!(lab.ok(node, &["debug", "gossip"]).contains("Members: 1"));
    }
    // Endpoints published under the new keys still reach the other node.
    let second = lab.web("web2", "app", 2);
    for (id, node) in first.iter().chain(second.iter()) {
        let ns = lab.task_ns(node, id);
        let (other_id, other_node) = second.iter().find(|t| &t.1 != node).unwrap();
        let ip = wait_for(Duration::from_secs(10), "an address", || {
            addr_of(&lab.task_ns(other_node, other_id), "eth0")
        })
        .0;
        wait_for(Duration::from_secs(10), "ping across nodes", || {
            pings(&ns, ip).then_some(())
        });
    }
}

#[test]
fn an_attachable_network_takes_containers_started_later() {
    let lab = Lab::up("ov-attach", 47, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "--attachable", "shared"]);
    lab.ok("manager1", &["network", "create", "closed"]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "web",
            "--network",
            "shared",
            "--constraint",
            "node.hostname==manager1",
            "shoal/demo-web",
        ],
    );
    let web = lab.wait_running("web", 1);
    let web_ip = wait_for(Duration::from_secs(10), "the web task's address", || {
        addr_of(&lab.task_ns("manager1", &web[0].0), "eth0")
    })
    .0;

    // A "container" started later on worker1: here a bare network namespace (named so
    // that `lab down` sweeps it).
    let probe = format!("shoal-{}-probe", lab.name);
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    lab.refused(
        "worker1",
        &["network", "connect", "closed", &probe],
        "not manually attachable",
    );
    lab.refused(
        "worker1",
        &["network", "connect", "shared", "no-such-container"],
        "no such container",
    );
    lab.ok("worker1", &["network", "connect", "shared", &probe]);
    let probe_ip = addr_of(&probe, "eth0").expect("connected with an address");
    assert!(probe_ip.to_string().starts_with("10.0."), "{probe_ip}");
    wait_for(
        Duration::from_secs(10),
        "the web page from the probe",
        || {
            http_get(&probe, web_ip)
                .contains(&web[0].0[..12])
                .then_some(())
        },
    );
    lab.refused(
        "worker1",
        &["network", "connect", "shared", &probe],
        "already connected",
    );
    let out = lab.ok("manager1", &["network", "inspect", "--verbose", "shared"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc[0]["Containers"][&probe]["IPv4Address"],
        format!("{probe_ip}/24"),
        "{out}"
    );
    let sandbox = lab.sandbox_ns("manager1", &lab.vni("shared"));
    assert!(neighbours(&sandbox).contains(&format!("{probe_ip} ")));

    lab.ok("worker1", &["network", "disconnect", "shared", &probe]);
    wait_for(Duration::from_secs(10), "the probe disconnected", || {
        addr_of(&probe, "eth0").is_none().then_some(())
    });
    wait_for(
        Duration::from_secs(10),
        "the probe's endpoint withdrawn",
        || (!neighbours(&sandbox).contains(&format!("{probe_ip} "))).then_some(()),
    );

    // The docker CLI does the same through shoal's socket: an attachable overlay is the
    // swarm's to connect (a local network would be the node's dockerd's).
    let refused = lab.docker(
        "worker1",
        &["network", "connect", "shared", "no-such-container"],
    );
    assert!(
        !refused.status.success() && text(&refused).to_lowercase().contains("no such container"),
        "{}",
        text(&refused)
    );
    lab.docker_ok(
        "worker1",
        &["network", "connect", "--alias", "prober", "shared", &probe],
    );
    wait_for(
        Duration::from_secs(10),
        "the probe connected by docker",
        || addr_of(&probe, "eth0").map(|_| ()),
    );
    lab.docker_ok("worker1", &["network", "disconnect", "shared", &probe]);
    wait_for(
        Duration::from_secs(10),
        "the probe disconnected by docker",
        || addr_of(&probe, "eth0").is_none().then_some(()),
    );

    // Connected again, it holds the network even once no service uses it.
    lab.ok("worker1", &["network", "connect", "shared", &probe]);
    lab.ok("manager1", &["service", "rm", "web"]);
    lab.refused("manager1", &["network", "rm", "shared"], "active endpoints");
    lab.ok("worker1", &["network", "disconnect", "shared", &probe]);
    wait_for(
        Duration::from_secs(10),
        "the network free to remove",
        || {
            lab.exec("manager1", &["network", "rm", "shared"])
                .status
                .success()
                .then_some(())
        },
    );
}

/// Drops gossip (both ports, both directions) in a lab node, or lets it through again.
fn cut_gossip(lab: &Lab, ns: &str, cut: bool) {
    let rules = if cut {
        "table inet shoal_test_partition {
           chain input { type filter hook input priority 0; tcp dport 7946 drop; udp dport 7946 drop; }
           chain output { type filter hook output priority 0; tcp dport 7946 drop; udp dport 7946 drop; }
         }"
    } else {
        "delete table inet shoal_test_partition"
    };
    let file = lab.dir().join("partition.nft");
    std::fs::write(&file, rules).unwrap();
    let out = in_ns(ns, &["nft", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "nft: {}", text(&out));
}

fn gossip_members(lab: &Lab, node: &str) -> usize {
    let out = lab.ok(node, &["debug", "gossip"]);
    out.lines()
        .find_map(|l| l.strip_prefix("Members: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no member count in:\n{out}"))
}

#[test]
fn gossip_heals_after_a_partition() {
    let lab = Lab::up("ov-part", 48, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    let vni = lab.vni("app");
    let worker = lab.netns("worker1");
    cut_gossip(&lab, &worker, true);
    wait_for(Duration::from_secs(15), "the partition detected", || {
        (gossip_members(&lab, "manager1") == 0).then_some(())
    });

    // The control plane still works: tasks start on both sides, but neither side can
    // learn the other's endpoint.
    let tasks = lab.web("web", "app", 2);
    let on = |node: &str| tasks.iter().find(|t| t.1 == node).unwrap().0.clone();
    let ns_a = lab.task_ns("manager1", &on("manager1"));
    let ip_b = wait_for(Duration::from_secs(10), "task b's address", || {
        addr_of(&lab.task_ns("worker1", &on("worker1")), "eth0")
    })
    .0;
    let sandbox = lab.sandbox_ns("manager1", &vni);
    std::thread::sleep(Duration::from_secs(2));
    assert!(fdb(&sandbox).is_empty(), "learnt across the partition");
    assert!(!pings(&ns_a, ip_b));

    cut_gossip(&lab, &worker, false);
    let ((), took) = wait_for(Duration::from_secs(20), "the healed overlay", || {
        (fdb(&sandbox).iter().any(|e| e.1 == lab.ip(2)) && pings(&ns_a, ip_b)).then_some(())
    });
    eprintln!("the overlay healed {took:?} after the partition ended");
    assert_eq!(gossip_members(&lab, "worker1"), 1);
}

/// The networks of the endpoints `shoal debug gossip` lists on `node`.
/// The network of every live endpoint in `node`'s gossip table (one per endpoint).
fn gossiped(lab: &Lab, node: &str) -> Vec<String> {
    let out = lab.ok(node, &["debug", "gossip"]);
    let table: String = out
        .lines()
        .skip_while(|l| !l.starts_with("NETWORK"))
        .take_while(|l| !l.starts_with("Datagrams:"))
        .collect::<Vec<_>>()
        .join("\n");
    common::parse_table(&table)
        .into_iter()
        .map(|r| r["NETWORK"].clone())
        .collect()
}

fn gossiped_networks(lab: &Lab, node: &str) -> std::collections::BTreeSet<String> {
    gossiped(lab, node).into_iter().collect()
}

fn network_id(lab: &Lab, name: &str) -> String {
    let out = lab.ok("manager1", &["network", "inspect", name]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn endpoint_tables_reach_only_the_nodes_of_their_network() {
    let lab = Lab::up("ov-scope", 49, 3, 1, "1s");
    lab.ok("manager1", &["network", "create", "red"]);
    lab.ok("manager1", &["network", "create", "blue"]);
    let (red, blue) = (network_id(&lab, "red"), network_id(&lab, "blue"));
    // Every node is on the ingress network (its leg for the routing mesh).
    let ingress = network_id(&lab, "ingress");
    for (service, network, replicas, constraint) in [
        ("r", "red", "2", "node.hostname!=worker2"),
        ("b", "blue", "1", "node.hostname==worker2"),
    ] {
        lab.ok(
            "manager1",
            &[
                "service",
                "create",
                "--name",
                service,
                "--network",
                network,
                "--replicas",
                replicas,
                "--replicas-max-per-node",
                "1",
                "--constraint",
                constraint,
                "shoal/demo-web",
            ],
        );
    }
    lab.wait_running("r", 2);
    lab.wait_running("b", 1);
    let only = |net: &str| std::collections::BTreeSet::from([net.to_string(), ingress.clone()]);
    wait_for(
        Duration::from_secs(10),
        "red's endpoints on both red nodes",
        || {
            let on = |node: &str| gossiped(&lab, node).iter().filter(|n| **n == red).count() == 2;
            (on("manager1") && on("worker1")).then_some(())
        },
    );
    assert_eq!(gossiped_networks(&lab, "manager1"), only(&red));
    assert_eq!(gossiped_networks(&lab, "worker1"), only(&red));
    assert_eq!(gossiped_networks(&lab, "worker2"), only(&blue));
}

#[test]
fn docker_containers_reach_each_other_over_the_overlay() {
    let lab = Lab::up_with("ov-docker", 50, 2, 1, "1s", "docker");
    lab.ok("manager1", &["network", "create", "app"]);
    let tasks = lab.web("web", "app", 2);
    let container = |task: &str| {
        let id = common::docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.task.id={task}"),
        ]);
        id.trim().to_string()
    };
    let (a, b) = (container(&tasks[0].0), container(&tasks[1].0));
    assert!(!a.is_empty() && !b.is_empty(), "{tasks:?}");
    let addr = common::docker(&["exec", &b, "ip", "-4", "-o", "addr", "show", "eth0"]);
    let ip_b = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .expect("b's overlay address")
        .to_string();
    let (page, _) = wait_for(Duration::from_secs(10), "b's page from a", || {
        let out = Command::new("docker")
            .args(["exec", &a, "wget", "-qO-", &format!("http://{ip_b}/")])
            .output()
            .ok()?;
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        page.contains("Hello from").then_some(page)
    });
    let hostname = common::docker(&["exec", &b, "hostname"]);
    assert!(page.contains(hostname.trim()), "{page}");

    // Containers ask the agent's resolver, which knows the service's tasks.
    let resolv = common::docker(&["exec", &a, "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let answer = common::docker(&["exec", &a, "nslookup", "tasks.web"]);
    assert!(answer.contains(&ip_b), "{answer}");
    let (page, _) = wait_for(Duration::from_secs(10), "a page by service name", || {
        let out = Command::new("docker")
            .args(["exec", &a, "wget", "-qO-", "http://web/"])
            .output()
            .ok()?;
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        page.contains("Hello from").then_some(page)
    });
    assert!(page.starts_with("Hello from"), "{page}");
}

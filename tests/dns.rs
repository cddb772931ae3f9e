//! Service discovery: the resolver at 127.0.0.11 inside every task, asked with dig from
//! inside task namespaces.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{Lab, addr_of, dig, text, wait_for};

/// The full dig output (header, flags, sections).
fn dig_full(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "dig", "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig");
    text(&out)
}

/// The TTL of the first answer to `name`.
fn answer_ttl(ns: &str, name: &str) -> u32 {
    let out = dig_full(ns, &["+noall", "+answer", name]);
    out.lines()
        .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no answer with a TTL:\n{out}"))
}

/// (task ID, node, overlay IP) of the running tasks of `service`.
fn task_ips(lab: &Lab, service: &str, n: usize) -> Vec<(String, String, String)> {
    lab.wait_running(service, n)
        .into_iter()
        .map(|(id, node)| {
            let ns = lab.task_ns(&node, &id);
            let ip = wait_for(Duration::from_secs(10), "a task address", || {
                addr_of(&ns, "eth0").map(|ip| ip.to_string())
            })
            .0;
            (id, node, ip)
        })
        .collect()
}

/// Network `app` and a one-task service `probe` on it (endpoint mode dnsrr: its name
/// answers its task's address): the task's namespace and address.
fn probe(lab: &Lab) -> (String, String) {
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "probe",
            "--network",
            "app",
            "--endpoint-mode",
            "dnsrr",
            "shoal/demo-web",
        ],
    );
    let (id, node, ip) = task_ips(lab, "probe", 1).remove(0);
    (lab.task_ns(&node, &id), ip)
}

/// A service `web` of `replicas` tasks on network `app`.
fn web_on_app(lab: &Lab, replicas: usize) {
    let replicas = replicas.to_string();
    let args = ["service", "create", "--name", "web", "--network", "app"];
    lab.ok(
        "manager1",
        &[&args[..], &["--replicas", &replicas, "shoal/demo-web"]].concat(),
    );
}

#[test]
fn cluster_names_resolve_inside_tasks_on_their_networks_only() {
    let lab = Lab::up("dns-names", 51, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok("manager1", &["network", "create", "other"]);
    // web also answers to an alias (how a stack's services answer to their short names).
    for (name, network, replicas) in [("web", "name=app,alias=front", "3"), ("db", "other", "1")] {
        lab.ok(
            "manager1",
            &[
                "service",
                "create",
                "--name",
                name,
                "--network",
                network,
                "--replicas",
                replicas,
                "shoal/demo-web",
            ],
        );
    }
    let web = task_ips(&lab, "web", 3);
    let db = task_ips(&lab, "db", 1);
    let ns = lab.task_ns(&web[0].1, &web[0].0);
    let resolv = std::fs::read_to_string(format!("/etc/netns/{ns}/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");

    let ips: BTreeSet<String> = web.iter().map(|t| t.2.clone()).collect();
    wait_for(
        Duration::from_secs(10),
        "tasks.web to resolve to its tasks",
        || (dig(&ns, &["tasks.web"]) == ips).then_some(()),
    );
    // Endpoint mode vip (the default): the service's name answers its VIP.
    assert_eq!(dig(&ns, &["web"]), BTreeSet::from([lab.vip("web")]));
    assert_eq!(dig(&ns, &["front"]), BTreeSet::from([lab.vip("web")]));
    assert_eq!(dig(&ns, &["tasks.front"]), ips);
    assert_eq!(answer_ttl(&ns, "web"), 5, "the default TTL");
    assert_eq!(dig(&ns, &["TASKS.WEB."]), ips, "names are case-insensitive");

    // A task by its name, and back.
    let rows = common::parse_table(&lab.ok("manager1", &["service", "ps", "--no-trunc", "web"]));
    let row = rows.iter().find(|r| r["ID"] == web[1].0).expect("a row");
    let task_name = format!("{}.{}", row["NAME"], web[1].0);
    assert_eq!(dig(&ns, &[&task_name]), BTreeSet::from([web[1].2.clone()]));
    assert_eq!(
        dig(&ns, &["-x", &web[1].2]),
        BTreeSet::from([format!("{task_name}.")])
    );

    // And by the hostname it sees (a process task's is its short ID).
    assert_eq!(
        dig(&ns, &[&web[1].0[..12]]),
        BTreeSet::from([web[1].2.clone()])
    );

    // A known name asked for AAAA: authoritative, no error, no answer.
    let aaaa = dig_full(&ns, &["web", "AAAA"]);
    assert!(aaaa.contains("status: NOERROR"), "{aaaa}");
    assert!(
        aaaa.contains(" aa ") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );

    // db is on a network this task is not on: not resolvable from here (the lab has no
    // upstream, so the forwarded question fails), while db itself sees nothing of web.
    assert!(dig(&ns, &["db"]).is_empty());
    let db_ns = lab.task_ns(&db[0].1, &db[0].0);
    assert_eq!(dig(&db_ns, &["db"]), BTreeSet::from([lab.vip("db")]));
    assert!(dig(&db_ns, &["web"]).is_empty());
}

#[test]
fn tasks_of_a_service_follow_scaling_within_a_second() {
    let lab = Lab::up_env(
        "dns-scale",
        52,
        2,
        1,
        "1s",
        "process",
        &[("SHOAL_DNS_TTL", "1")],
    );
    let (ns, _) = probe(&lab);
    web_on_app(&lab, 3);
    assert_eq!(answer_ttl(&ns, "tasks.web"), 1, "--dns-ttl");
    for n in [3usize, 5, 1] {
        lab.ok("manager1", &["service", "scale", &format!("web={n}")]);
        let want: BTreeSet<String> = task_ips(&lab, "web", n).into_iter().map(|t| t.2).collect();
        let ((), took) = wait_for(
            Duration::from_secs(1),
            &format!("tasks.web to list {n}"),
            || (dig(&ns, &["tasks.web"]) == want).then_some(()),
        );
        eprintln!("tasks.web listed {n} tasks {took:?} after `service ps` did");
    }
}

#[test]
fn other_names_go_upstream_and_a_dead_upstream_fails_over() {
    // The first upstream is a lab address nobody answers on; the second is dnsmasq.
    let dead = "10.239.53.250";
    let live = "10.239.53.1";
    let lab = Lab::up_full(
        "dns-up",
        53,
        1,
        1,
        "1s",
        "process",
        &[],
        &["--dns-upstream", dead, "--dns-upstream", live],
    );
    let log = lab.dir().join("dnsmasq.log");
    let _upstream = common::Upstream::start(live, &log);
    let (ns, probe_ip) = probe(&lab);
    let start = std::time::Instant::now();
    let answer = wait_for(Duration::from_secs(15), "the forwarded answer", || {
        let a = dig(&ns, &["+time=5", "outside.test"]);
        (!a.is_empty()).then_some(a)
    })
    .0;
    assert_eq!(answer, BTreeSet::from(["192.0.2.7".to_string()]));
    eprintln!(
        "answered through the second upstream in {:?}",
        start.elapsed()
    );
    // The upstream that answered is asked first from now on: no more timeouts.
    let again = std::time::Instant::now();
    assert_eq!(dig(&ns, &["outside.test"]), answer);
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "{:?}",
        again.elapsed()
    );

    // A name that does not exist: NXDOMAIN, and asked upstream only once in a while.
    for _ in 0..3 {
        let out = dig_full(&ns, &["gone.test"]);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let asked = logged
        .lines()
        .filter(|l| l.contains("query[A] gone.test"))
        .count();
    assert_eq!(asked, 1, "the negative answer is cached:\n{logged}");
    // Cluster names are still answered locally, whatever the upstreams do.
    assert_eq!(dig(&ns, &["probe"]), BTreeSet::from([probe_ip.clone()]));
}

#[test]
fn malformed_and_oversized_queries_do_not_stop_the_resolver() {
    let lab = Lab::up("dns-bad", 54, 1, 1, "1s");
    let (ns, probe_ip) = probe(&lab);
    wait_for(Duration::from_secs(10), "the resolver", || {
        (dig(&ns, &["probe"]).len() == 1).then_some(())
    });
    let replies = common::within(&ns, || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut replies = Vec::new();
        // Garbage, a truncated header, a header claiming questions it lacks, 64 KiB.
        let header_only = [0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0];
        for q in [
            &b"not dns at all"[..],
            &[0x12, 0x34][..],
            &header_only[..],
            &vec![0xffu8; 65000][..],
        ] {
            s.send_to(q, "127.0.0.11:53").unwrap();
            let mut buf = [0u8; 512];
            replies.push(s.recv(&mut buf).ok().map(|n| buf[..n].to_vec()));
        }
        replies
    });
    for r in replies.iter().flatten() {
        // Any answer to garbage is an error (FORMERR, SERVFAIL, or NOTIMP for an opcode
        // that is not a query), never data.
        let rcode = r.get(3).map_or(1, |b| b & 0x0f);
        let answers = r.get(6..8).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
        assert!(
            [1, 2, 4].contains(&rcode) && answers == 0,
            "answered garbage with rcode {rcode}: {r:?}"
        );
    }
    assert_eq!(
        dig(&ns, &["probe"]),
        BTreeSet::from([probe_ip.clone()]),
        "the resolver still serves"
    );
}

#[test]
fn an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let lab = Lab::up("dns-big", 111, 1, 1, "1s");
    let (ns, _) = probe(&lab);
    web_on_app(&lab, 40);
    let ips: BTreeSet<String> = task_ips(&lab, "web", 40).into_iter().map(|t| t.2).collect();
    wait_for(Duration::from_secs(10), "tasks.web to list 40", || {
        (dig(&ns, &["tasks.web"]) == ips).then_some(())
    });
    // 40 addresses do not fit in 512 bytes: without EDNS the UDP answer says truncated,
    // and dig, told not to retry, shows part of them.
    let udp = dig_full(&ns, &["+noedns", "+ignore", "tasks.web"]);
    let flags = udp
        .lines()
        .find(|l| l.contains(";; flags:"))
        .unwrap_or_default();
    assert!(flags.contains(" tc"), "{udp}");
    let shown = dig(&ns, &["+noedns", "+ignore", "tasks.web"]);
    assert!(
        !shown.is_empty() && shown.len() < 40 && shown.is_subset(&ips),
        "{shown:?}"
    );
    // dig retries a truncated answer over TCP, as resolvers do; and asks over TCP.
    assert_eq!(dig(&ns, &["+noedns", "tasks.web"]), ips);
    assert_eq!(dig(&ns, &["+tcp", "tasks.web"]), ips);
    assert_eq!(dig(&ns, &["+tcp", "probe"]).len(), 1);
    // With EDNS (dig's default 1232 bytes) they fit in one UDP answer.
    let edns = dig_full(&ns, &["tasks.web"]);
    assert!(
        edns.contains("ANSWER: 40") && !edns.contains(" tc"),
        "{edns}"
    );
}

#[test]
fn a_task_is_answered_only_once_healthy() {
    let lab = Lab::up_with("dns-health", 55, 1, 1, "1s", "docker");
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "probe",
            "--network",
            "app",
            "shoal/demo-web",
        ],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--network",
            "app",
            "--health-cmd",
            "test -f /ready",
            "--health-interval",
            "1s",
            "--health-retries",
            "1000",
            "shoal/demo-web",
        ],
    );
    let container = |service: &str| {
        wait_for(
            Duration::from_secs(20),
            &format!("{service}'s container"),
            || {
                let id = common::docker(&[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={service}"),
                ]);
                Some(id.trim().to_string()).filter(|id| !id.is_empty())
            },
        )
        .0
    };
    let (probe, web) = (container("probe"), container("web"));
    let web_ip = wait_for(Duration::from_secs(10), "web's overlay address", || {
        let out = common::docker(&["exec", &web, "ip", "-4", "-o", "addr", "show"]);
        out.split_whitespace()
            .filter_map(|w| w.split('/').next())
            .find(|ip| ip.starts_with("10.0."))
            .map(str::to_string)
    })
    .0;
    let lookup = || {
        let out = Command::new("docker")
            .args(["exec", &probe, "nslookup", "tasks.web"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&web_ip)
    };
    // Starting, not yet healthy: not answered.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lookup(), "an unhealthy task was answered");
    common::docker(&["exec", &web, "touch", "/ready"]);
    let ((), took) = wait_for(Duration::from_secs(10), "web answered once healthy", || {
        lookup().then_some(())
    });
    eprintln!("web was answered {took:?} after it could turn healthy");
}

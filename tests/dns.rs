//! Service discovery: the resolver at 127.0.0.11 inside every task, asked with dig from
//! inside task namespaces.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{Lab, text, wait_for};

/// `dig +short ARGS` from inside a namespace: the answer lines.
fn dig(ns: &str, args: &[&str]) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "dig", "+short", "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(";;"))
        .collect()
}

/// The full dig output (header, flags, sections).
fn dig_full(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "dig", "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig");
    text(&out)
}

fn task_ip(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// (task ID, node, overlay IP) of the running tasks of `service`.
fn task_ips(lab: &Lab, service: &str, n: usize) -> Vec<(String, String, String)> {
    lab.wait_running(service, n)
        .into_iter()
        .map(|(id, node)| {
            let ns = lab.task_ns(&node, &id);
            let ip = wait_for(Duration::from_secs(10), "a task address", || {
                Some(task_ip(&ns)).filter(|ip| !ip.is_empty())
            })
            .0;
            (id, node, ip)
        })
        .collect()
}

#[test]
fn cluster_names_resolve_inside_tasks_on_their_networks_only() {
    let lab = Lab::up("dns-names", 51, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok("manager1", &["network", "create", "other"]);
    for (name, network, replicas) in [("web", "app", "3"), ("db", "other", "1")] {
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
        "web to resolve to its tasks",
        || (dig(&ns, &["web"]) == ips).then_some(()),
    );
    assert_eq!(dig(&ns, &["tasks.web"]), ips);
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
    assert_eq!(dig(&db_ns, &["db"]), BTreeSet::from([db[0].2.clone()]));
    assert!(dig(&db_ns, &["web"]).is_empty());
}

#[test]
fn tasks_of_a_service_follow_scaling_within_a_second() {
    let lab = Lab::up("dns-scale", 52, 2, 1, "1s");
    lab.ok("manager1", &["network", "create", "app"]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "web",
            "--network",
            "app",
            "--replicas",
            "3",
            "shoal/demo-web",
        ],
    );
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
    let probe = task_ips(&lab, "probe", 1);
    let ns = lab.task_ns(&probe[0].1, &probe[0].0);
    for n in [3usize, 5, 1] {
        lab.ok("manager1", &["service", "scale", &format!("web={n}")]);
        let want: BTreeSet<String> = task_ips(&lab, "web", n).into_iter().map(|t| t.2).collect();
        let (_, took) = wait_for(
            Duration::from_secs(1),
            &format!("tasks.web to list {n}"),
            || (dig(&ns, &["tasks.web"]) == want).then_some(()),
        );
        eprintln!("tasks.web listed {n} tasks {took:?} after `service ps` did");
    }
}

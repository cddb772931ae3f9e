//! Acceptance tests of the foundation: the lab, Raft managers, secure join, heartbeats.
//! They need root, iproute2, and a built `shoal` binary (see README).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Lab, shoal, text, wait_for};

const NOT_A_MANAGER: &str = "Worker nodes can't be used to view or modify cluster state";

#[test]
fn three_node_lab_shows_every_node_ready_and_one_leader() {
    let lab = Lab::up("fnd-ready", 1, 3, 1, "5s");
    let nodes = lab.nodes("manager1");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        nodes
            .iter()
            .all(|n| n.status == "Ready" && n.availability == "Active"),
        "{nodes:?}"
    );
    let leaders: Vec<_> = nodes
        .iter()
        .filter(|n| n.manager_status == "Leader")
        .collect();
    assert_eq!(leaders.len(), 1, "{nodes:?}");
    assert_eq!(leaders[0].hostname, "manager1");
    let me: Vec<_> = nodes.iter().filter(|n| n.is_self).collect();
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].hostname, "manager1");
    let mut hostnames: Vec<_> = nodes.iter().map(|n| n.hostname.as_str()).collect();
    hostnames.sort_unstable();
    assert_eq!(hostnames, ["manager1", "worker1", "worker2"]);

    // Workers refuse cluster commands with docker's explanation.
    let out = lab.exec("worker1", &["node", "ls"]);
    assert!(!out.status.success());
    assert!(text(&out).contains(NOT_A_MANAGER), "{}", text(&out));

    // Nodes sit at .11, .12, .13 and report those addresses.
    let inspect = lab.ok("manager1", &["node", "inspect", "worker2"]);
    let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(doc[0]["Status"]["Addr"], lab.ip(3));
    assert_eq!(doc[0]["Spec"]["Role"], "worker");
    let pretty = lab.ok("manager1", &["node", "inspect", "--pretty", "self"]);
    assert!(
        pretty.contains("Hostname:\t\tmanager1") && pretty.contains("Leader:\t\tYes"),
        "{pretty}"
    );

    // The control socket is root's alone.
    let run = lab.node("manager1").run_dir();
    let sock = std::fs::metadata(run.join("shoal.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(sock & 0o077, 0, "socket mode {sock:o}");
    let dir = std::fs::metadata(&run).unwrap().permissions().mode();
    assert_eq!(dir & 0o077, 0, "run dir mode {dir:o}");
}

#[test]
fn leader_failover_keeps_writes_and_restarts_keep_state() {
    let lab = Lab::up("fnd-raft", 2, 3, 3, "1s");
    let managers = ["manager1", "manager2", "manager3"];
    let leader_seen_by = |node: &str| -> Option<String> {
        lab.try_nodes(node)?
            .into_iter()
            .find(|n| n.manager_status == "Leader")
            .map(|n| n.hostname)
    };
    // Every node is a manager here, so `node ls` works from each: 3 Ready, one Leader.
    wait_for(
        Duration::from_secs(10),
        "every manager to see 3 Ready nodes and one Leader",
        || {
            managers
                .iter()
                .all(|m| {
                    lab.try_nodes(m).is_some_and(|rows| {
                        rows.len() == 3
                            && rows.iter().all(|n| n.status == "Ready")
                            && rows.iter().filter(|n| n.manager_status == "Leader").count() == 1
                    })
                })
                .then_some(())
        },
    );
    let (old_leader, _) = wait_for(Duration::from_secs(10), "a leader", || {
        leader_seen_by("manager1")
    });
    let survivors: Vec<&str> = managers
        .iter()
        .copied()
        .filter(|m| *m != old_leader)
        .collect();

    lab.stop(&old_leader, true);
    let (new_leader, took) = wait_for(Duration::from_secs(10), "a new leader", || {
        leader_seen_by(survivors[0]).filter(|l| *l != old_leader)
    });
    assert!(survivors.contains(&new_leader.as_str()));
    assert!(took < Duration::from_secs(10), "new leader after {took:?}");

    // A write through the manager that is not the leader is forwarded and commits.
    let follower = survivors.iter().find(|m| **m != new_leader).unwrap();
    lab.ok(
        follower,
        &["node", "update", "--label-add", "failover=ok", follower],
    );

    lab.start(&old_leader);
    let label_on = |node: &str, target: &str| {
        let out = lab.exec(node, &["node", "inspect", target]);
        out.status.success() && text(&out).contains("\"failover\": \"ok\"")
    };
    wait_for(
        Duration::from_secs(15),
        "the restarted manager to have the write",
        || label_on(&old_leader, follower).then_some(()),
    );
    let rows = lab.nodes(&old_leader);
    let me = rows.iter().find(|n| n.is_self).unwrap();
    assert_ne!(
        me.manager_status, "Leader",
        "the restarted manager should follow: {rows:?}"
    );
    assert_eq!(
        leader_seen_by(&old_leader).as_deref(),
        Some(new_leader.as_str())
    );

    // Restart every daemon: the swarm and its objects survive.
    for m in managers {
        lab.stop(m, false);
    }
    for m in managers {
        lab.start(m);
    }
    wait_for(
        Duration::from_secs(20),
        "a leader after a full restart",
        || leader_seen_by("manager1"),
    );
    assert!(
        label_on("manager2", follower),
        "the label was lost in the restart"
    );
    wait_for(
        Duration::from_secs(20),
        "all managers Ready and reachable",
        || {
            let rows = lab.try_nodes("manager1")?;
            (rows.len() == 3
                && rows.iter().all(|n| n.status == "Ready")
                && rows
                    .iter()
                    .all(|n| n.manager_status == "Leader" || n.manager_status == "Reachable"))
            .then_some(())
        },
    );
}

#[test]
fn join_is_refused_for_bad_tokens_and_nothing_is_written() {
    let lab = Lab::up("fnd-join", 3, 2, 1, "1s");
    lab.ok("worker1", &["swarm", "leave"]);
    let token = lab
        .ok("manager1", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let manager_addr = format!("{}:2377", lab.ip(1));
    let swarm_dir = lab.node("worker1").data_dir().join("swarm");
    let count = || lab.nodes("manager1").len();
    let before = count();

    let bad_digest = {
        let mut t = token.clone();
        let i = "SWMTKN-1-".len();
        let c = if &t[i..=i] == "0" { "1" } else { "0" };
        t.replace_range(i..=i, c);
        t
    };
    let attempts = [
        ("SWMTKN-1-notatoken".to_string(), "invalid join token"),
        (bad_digest, "does not match the join token's digest"),
    ];
    for (bad, why) in &attempts {
        let out = lab.exec("worker1", &["swarm", "join", "--token", bad, &manager_addr]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains(why),
            "expected {why:?}, got {}",
            text(&out)
        );
        assert!(
            !swarm_dir.exists(),
            "a refused join left {} behind",
            swarm_dir.display()
        );
    }
    lab.ok("manager1", &["swarm", "join-token", "--rotate", "worker"]);
    let out = lab.exec(
        "worker1",
        &["swarm", "join", "--token", &token, &manager_addr],
    );
    assert!(
        text(&out).contains("invalid or has been rotated"),
        "{}",
        text(&out)
    );
    assert!(!swarm_dir.exists());
    assert!(lab.ok("worker1", &["info"]).contains("Swarm: inactive"));
    assert_eq!(count(), before, "a refused join added a node");

    // The current worker token joins, as a worker, and its certificate says so.
    let fresh = lab
        .ok("manager1", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    assert_ne!(fresh, token);
    let out = lab.ok(
        "worker1",
        &["swarm", "join", "--token", &fresh, &manager_addr],
    );
    assert!(out.contains("joined a swarm as a worker"), "{out}");
    let cert = std::fs::read_to_string(lab.certs("worker1").join("node.crt")).unwrap();
    let id =
        shoal_proto::tls::peer_identity(&shoal_proto::tls::pem_to_der(&cert).unwrap()).unwrap();
    assert_eq!(id.role, shoal_proto::NodeRole::Worker);
    let key_mode = std::fs::metadata(lab.certs("worker1").join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "node key mode {key_mode:o}");
}

#[test]
fn worker_certificate_is_refused_by_manager_operations() {
    let lab = Lab::up("fnd-cert", 4, 2, 1, "5s");
    let manager = format!("tcp://{}:2377", lab.ip(1));
    let with_certs = |node: &str, args: &[&str]| {
        let certs = lab.certs(node);
        let mut full = vec!["-H", &manager, "--tls-dir", certs.to_str().unwrap()];
        full.extend_from_slice(args);
        shoal(&full)
    };
    for args in [&["node", "ls"][..], &["swarm", "join-token", "manager"][..]] {
        let out = with_certs("worker1", args);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("for managers only") && text(&out).contains("worker node"),
            "{}",
            text(&out)
        );
    }
    // The same call with a manager's certificate is served.
    let out = with_certs("manager1", &["node", "ls"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        common::parse_node_ls(&String::from_utf8_lossy(&out.stdout)).len(),
        2
    );
}

#[test]
fn stopped_node_is_down_within_three_heartbeats_and_ready_after_restart() {
    let lab = Lab::up("fnd-beat", 5, 3, 1, "2s");
    let state = |host: &str| {
        lab.nodes("manager1")
            .into_iter()
            .find(|n| n.hostname == host)
            .map(|n| n.status)
            .unwrap()
    };
    lab.stop("worker2", false);
    let ((), took) = wait_for(Duration::from_secs(10), "worker2 Down", || {
        (state("worker2") == "Down").then_some(())
    });
    // Three 2 s periods, plus the leader's half-second check and the poll's own time.
    assert!(took <= Duration::from_millis(7500), "Down after {took:?}");
    assert_eq!(state("worker1"), "Ready");
    lab.start("worker2");
    wait_for(Duration::from_secs(5), "worker2 Ready again", || {
        (state("worker2") == "Ready").then_some(())
    });
}

#[test]
fn promote_and_demote_move_a_node_in_and_out_of_the_managers() {
    let lab = Lab::up("fnd-role", 6, 3, 1, "1s");
    let out = lab.ok("manager1", &["node", "promote", "worker1"]);
    assert!(out.contains("promoted to a manager"), "{out}");
    wait_for(
        Duration::from_secs(20),
        "worker1 to act as a manager",
        || {
            let rows = lab.try_nodes("worker1")?;
            let me = rows.iter().find(|n| n.is_self)?;
            (me.manager_status == "Reachable").then_some(())
        },
    );
    let out = lab.ok("manager1", &["node", "demote", "worker1"]);
    assert!(out.contains("demoted"), "{out}");
    wait_for(
        Duration::from_secs(20),
        "worker1 to be a worker again",
        || {
            let out = lab.exec("worker1", &["node", "ls"]);
            let rows = lab.nodes("manager1");
            let w = rows.iter().find(|n| n.hostname == "worker1")?;
            (text(&out).contains(NOT_A_MANAGER) && w.manager_status.is_empty()).then_some(())
        },
    );
    // The last manager cannot be demoted.
    let out = lab.exec("manager1", &["node", "demote", "manager1"]);
    assert!(text(&out).contains("last manager"), "{}", text(&out));
}

#[test]
fn force_new_cluster_recovers_a_manager_after_quorum_loss() {
    let lab = Lab::up("fnd-force", 7, 3, 3, "1s");
    lab.ok(
        "manager1",
        &["node", "update", "--label-add", "kept=yes", "manager1"],
    );
    lab.stop("manager2", true);
    lab.stop("manager3", true);
    let out = lab.exec(
        "manager1",
        &["node", "update", "--label-add", "lost=yes", "manager1"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not have a leader"),
        "{}",
        text(&out)
    );

    lab.ok("manager1", &["swarm", "init", "--force-new-cluster"]);
    lab.ok(
        "manager1",
        &["node", "update", "--label-add", "after=yes", "manager1"],
    );
    let inspect = lab.ok("manager1", &["node", "inspect", "manager1"]);
    assert!(
        inspect.contains("\"kept\": \"yes\"") && inspect.contains("\"after\": \"yes\""),
        "{inspect}"
    );
    let rows = lab.nodes("manager1");
    assert_eq!(
        rows.iter().find(|n| n.is_self).unwrap().manager_status,
        "Leader"
    );
}

#[test]
fn lab_down_leaves_nothing_behind() {
    let name = "fnd-down";
    let lab = Lab::up(name, 8, 2, 1, "5s");
    let dir = lab.dir();
    let pids: Vec<String> = ["manager1", "worker1"]
        .iter()
        .map(|n| std::fs::read_to_string(lab.node(n).pid_file()).unwrap())
        .collect();
    drop(lab);
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !netns.iter().any(|n| n.contains(name)),
        "namespaces left: {netns:?}"
    );
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/shl-{name}")).exists(),
        "host link left"
    );
    for pid in pids {
        // An exited daemon may linger as a zombie until init reaps it; that is not running.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let running = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'));
        assert!(
            stat.is_empty() || !running,
            "daemon {pid} still running: {stat}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(name), "mounts left:\n{mounts}");
    assert!(!dir.exists(), "{} left", dir.display());
    let status = text(&shoal(&["lab", "status"]));
    assert!(!status.contains(name), "{status}");
}

#[test]
fn managers_leaving_with_force_leave_raft_and_node_rm_follows_docker_rules() {
    let lab = Lab::up("fnd-leave", 9, 4, 3, "1s");
    let out = lab.exec("manager3", &["swarm", "leave"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Use `--force`"), "{}", text(&out));

    lab.ok("manager3", &["swarm", "leave", "--force"]);
    lab.ok("manager2", &["swarm", "leave", "--force"]);
    // manager1 is now the only Raft member: it commits on its own.
    lab.ok(
        "manager1",
        &["node", "update", "--label-add", "alone=yes", "manager1"],
    );
    assert!(lab.ok("manager3", &["info"]).contains("Swarm: inactive"));

    let out = lab.exec("manager1", &["node", "rm", "worker1"]);
    assert!(text(&out).contains("is not down"), "{}", text(&out));
    wait_for(Duration::from_secs(10), "manager3 Down", || {
        let rows = lab.nodes("manager1");
        (rows.iter().find(|n| n.hostname == "manager3")?.status == "Down").then_some(())
    });
    let out = lab.exec("manager1", &["node", "rm", "manager3"]);
    assert!(text(&out).contains("must be demoted"), "{}", text(&out));
    lab.ok("manager1", &["node", "demote", "manager3"]);
    wait_for(Duration::from_secs(10), "manager3 demoted", || {
        let rows = lab.nodes("manager1");
        rows.iter()
            .find(|n| n.hostname == "manager3")?
            .manager_status
            .is_empty()
            .then_some(())
    });
    lab.ok("manager1", &["node", "rm", "manager3"]);
    lab.ok("manager1", &["node", "rm", "--force", "worker1"]);
    let hosts: Vec<String> = lab
        .nodes("manager1")
        .into_iter()
        .map(|n| n.hostname)
        .collect();
    assert!(
        !hosts.contains(&"manager3".into()) && !hosts.contains(&"worker1".into()),
        "{hosts:?}"
    );
    // The removed worker learns it is out: its certificate is no longer honoured.
    wait_for(
        Duration::from_secs(10),
        "worker1 to report its removal",
        || {
            lab.ok("worker1", &["info"])
                .contains("removed")
                .then_some(())
        },
    );
}

/// How many older snapshots `shoal info` says the manager keeps.
fn older_snapshots(info: &str) -> usize {
    let line = info
        .lines()
        .find_map(|l| l.split_once("older kept at "))
        .map(|(_, list)| list.trim().to_string())
        .unwrap_or_else(|| panic!("no snapshots line in {info}"));
    line.trim_matches(['[', ']'])
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .count()
}

#[test]
fn a_manager_that_fell_behind_catches_up_from_a_snapshot() {
    let lab = Lab::up("fnd-snap", 10, 3, 3, "1s");
    // Snapshots every 10 entries, so the log the lagging manager needs is purged; two
    // older snapshots are kept besides the newest.
    lab.ok(
        "manager1",
        &[
            "swarm",
            "update",
            "--snapshot-interval",
            "10",
            "--max-snapshots",
            "2",
        ],
    );
    lab.stop("manager3", true);
    for i in 0..40 {
        lab.ok(
            "manager1",
            &[
                "node",
                "update",
                "--label-add",
                &format!("round={i}"),
                "manager2",
            ],
        );
    }
    wait_for(
        Duration::from_secs(10),
        "manager1 to keep 2 older snapshots",
        || {
            let info = lab.ok("manager1", &["info"]);
            (info.contains("Snapshot Interval: 10")
                && info.contains("Number of Old Snapshots to Retain: 2")
                && older_snapshots(&info) == 2)
                .then_some(())
        },
    );
    lab.start("manager3");
    wait_for(
        Duration::from_secs(20),
        "manager3 to have the last write",
        || {
            let out = lab.exec("manager3", &["node", "inspect", "manager2"]);
            (out.status.success() && text(&out).contains("\"round\": \"39\"")).then_some(())
        },
    );
    // Fewer kept: the next snapshot leaves none of the older ones.
    lab.docker_ok("manager1", &["swarm", "update", "--max-snapshots", "0"]);
    for i in 0..12 {
        lab.ok(
            "manager1",
            &[
                "node",
                "update",
                "--label-add",
                &format!("more={i}"),
                "manager2",
            ],
        );
    }
    wait_for(
        Duration::from_secs(10),
        "manager1 to keep no older snapshot",
        || (older_snapshots(&lab.ok("manager1", &["info"])) == 0).then_some(()),
    );
    let log = std::fs::read_to_string(lab.node("manager3").log()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

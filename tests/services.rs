//! Acceptance tests of services and tasks on lab clusters (process runtime: tasks are
//! real processes in their own network namespaces).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Lab, docker, text, wait_for};

fn per_node(tasks: &[(String, String)]) -> Vec<usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, node) in tasks {
        *counts.entry(node).or_default() += 1;
    }
    let mut v: Vec<usize> = counts.into_values().collect();
    v.sort_unstable();
    v
}

/// The task's own answer over HTTP, from inside its network namespace.
fn http_from_task(lab: &Lab, node: &str, task_id: &str) -> String {
    let netns = lab.task_ns(node, task_id);
    // (busybox wget's own -T timeout crashes; bound it from outside.)
    let out = std::process::Command::new("timeout")
        .args([
            "5",
            "ip",
            "netns",
            "exec",
            &netns,
            "busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1/",
        ])
        .output()
        .unwrap();
    let _ = lab;
    text(&out)
}

#[test]
fn replicas_spread_over_nodes_and_follow_scale() {
    let lab = Lab::up("svc-scale", 21, 3, 1, "1s");
    let out = lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "5",
            "shoal/demo-web",
        ],
    );
    assert!(out.contains("verify: Service converged"), "{out}");
    let tasks = lab.wait_running("web", 5);
    assert_eq!(per_node(&tasks), [1, 2, 2], "{tasks:?}");

    // Each task is the demo web app, answering with its own hostname.
    let (id, node) = &tasks[0];
    let answer = wait_for(Duration::from_secs(5), "the demo app to answer", || {
        let a = http_from_task(&lab, node, id);
        a.contains("Hello from").then_some(a)
    })
    .0;
    assert!(answer.contains(&id[..12]), "{answer}");

    let ls = common::parse_table(&lab.ok("manager1", &["service", "ls"]));
    assert_eq!(ls[0]["REPLICAS"], "5/5");
    assert_eq!(ls[0]["MODE"], "replicated");

    let out = lab.ok("manager1", &["service", "scale", "web=10"]);
    assert!(
        out.contains("web scaled to 10") && out.contains("verify: Service converged"),
        "{out}"
    );
    assert_eq!(
        per_node(&lab.wait_running("web", 10)).iter().sum::<usize>(),
        10
    );
    lab.ok("manager1", &["service", "scale", "web=2"]);
    lab.wait_running("web", 2);
    let shut: Vec<_> = lab
        .tasks("web")
        .into_iter()
        .filter(|t| t["DESIRED STATE"] == "Shutdown")
        .collect();
    assert_eq!(shut.len(), 8, "scaled-down tasks stay in the history");

    lab.ok("manager1", &["service", "rm", "web"]);
    wait_for(
        Duration::from_secs(15),
        "the removed service's tasks to stop",
        || {
            let netns: Vec<String> = std::fs::read_dir("/run/netns")
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| tasks.iter().any(|(id, _)| n.ends_with(&id[..12])))
                .collect();
            netns.is_empty().then_some(())
        },
    );
}

#[test]
fn global_service_covers_every_available_node_including_late_joiners() {
    let lab = Lab::up("svc-global", 22, 4, 1, "1s");
    lab.ok("worker3", &["swarm", "leave"]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "g",
            "--mode",
            "global",
            "shoal/demo-web",
        ],
    );
    let tasks = wait_for(Duration::from_secs(20), "a task on each of 3 nodes", || {
        let r = lab.running("g");
        (r.len() == 3).then_some(r)
    })
    .0;
    let mut nodes: Vec<&str> = tasks.iter().map(|(_, n)| n.as_str()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["manager1", "worker1", "worker2"]);

    lab.ok(
        "manager1",
        &["node", "update", "--availability", "drain", "worker1"],
    );
    wait_for(
        Duration::from_secs(20),
        "the drained node's task to go",
        || {
            let r = lab.running("g");
            (r.len() == 2 && r.iter().all(|(_, n)| n != "worker1")).then_some(())
        },
    );

    let token = lab.ok("manager1", &["swarm", "join-token", "-q", "worker"]);
    lab.ok(
        "worker3",
        &[
            "swarm",
            "join",
            "--token",
            token.trim(),
            &format!("{}:2377", lab.ip(1)),
        ],
    );
    wait_for(
        Duration::from_secs(20),
        "a task on the node that joined",
        || {
            let r = lab.running("g");
            (r.len() == 3 && r.iter().any(|(_, n)| n == "worker3")).then_some(())
        },
    );
}

#[test]
fn dead_tasks_are_replaced_and_a_down_nodes_tasks_move() {
    let lab = Lab::up("svc-heal", 23, 3, 1, "1s");
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "--restart-delay",
            "0s",
            "shoal/demo-web",
        ],
    );
    let tasks = lab.wait_running("web", 3);
    let (victim, node) = tasks.iter().find(|(_, n)| n != "manager1").unwrap().clone();
    let pid = std::fs::read_to_string(
        lab.dir()
            .join(&node)
            .join("run/tasks")
            .join(&victim)
            .join("pid"),
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "a replacement for the killed task",
        || {
            let rows = lab.tasks("web");
            let failed = rows.iter().any(|t| {
                t["ID"] == victim
                    && t["CURRENT STATE"].starts_with("Failed")
                    && t["ERROR"].contains("non-zero exit")
            });
            let running = lab.running("web");
            (failed && running.len() == 3 && !running.iter().any(|(id, _)| *id == victim))
                .then_some(())
        },
    );

    lab.stop("worker2", false);
    wait_for(
        Duration::from_secs(20),
        "worker2's tasks to run elsewhere",
        || {
            let r = lab.running("web");
            (r.len() == 3 && r.iter().all(|(_, n)| n != "worker2")).then_some(())
        },
    );
    // When worker2 comes back, the tasks that moved away are stopped there.
    lab.start("worker2");
    wait_for(
        Duration::from_secs(20),
        "worker2's old tasks to shut down",
        || {
            let rows = lab.tasks("web");
            rows.iter()
                .filter(|t| t["NODE"] == "worker2")
                .all(|t| !t["CURRENT STATE"].starts_with("Running"))
                .then_some(())
        },
    );
}

#[test]
fn constraints_and_reservations_are_honoured_and_explained() {
    let lab = Lab::up("svc-place", 24, 3, 1, "1s");
    lab.ok(
        "manager1",
        &["node", "update", "--label-add", "disk=ssd", "worker1"],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "ssd",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.disk==ssd",
            "shoal/demo-web",
        ],
    );
    let tasks = lab.wait_running("ssd", 2);
    assert!(tasks.iter().all(|(_, n)| n == "worker1"), "{tasks:?}");

    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "huge",
            "--reserve-memory",
            "100G",
            "shoal/demo-web",
        ],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "nowhere",
            "--constraint",
            "node.hostname==elsewhere",
            "shoal/demo-web",
        ],
    );
    for (service, reason) in [
        ("huge", "no suitable node (insufficient memory on 3 nodes)"),
        (
            "nowhere",
            "no suitable node (scheduling constraints not satisfied on 3 nodes)",
        ),
    ] {
        wait_for(
            Duration::from_secs(10),
            &format!("{service} pending with a reason"),
            || {
                let rows = lab.tasks(service);
                (rows.len() == 1
                    && rows[0]["CURRENT STATE"].starts_with("Pending")
                    && rows[0]["ERROR"] == format!("\"{reason}\""))
                .then_some(())
            },
        );
    }
}

#[test]
fn invalid_specs_are_refused_and_nothing_is_written() {
    let lab = Lab::up("svc-bad", 25, 1, 1, "1s");
    lab.ok(
        "manager1",
        &["service", "create", "-d", "--name", "web", "shoal/demo-web"],
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["--name", "a", "--replicas", "-1", "shoal/demo-web"],
            "a whole number from 0 to 10000",
        ),
        (&["--name", "b", ""], "image is empty"),
        (
            &[
                "--name",
                "c",
                "--constraint",
                "node.role=manager",
                "shoal/demo-web",
            ],
            "malformed constraint",
        ),
        (
            &["--name", "d", "-p", "0:80", "shoal/demo-web"],
            "out of range",
        ),
        (
            &["--name", "e", "-p", "8080:70000", "shoal/demo-web"],
            "out of range",
        ),
        (&["--name", "web", "shoal/demo-web"], "already exists"),
        (
            &["--name", "f", "--no-such-flag", "shoal/demo-web"],
            "unexpected argument '--no-such-flag'",
        ),
        (
            &["--name", "bad/name", "shoal/demo-web"],
            "invalid service name",
        ),
        // What a container engine gives a task is checked by the managers too.
        (
            &[
                "--name",
                "g",
                "--mount",
                "type=bind,source=data,target=/data",
                "shoal/demo-web",
            ],
            "absolute path of a host directory",
        ),
        (
            &[
                "--name",
                "h",
                "--mount",
                "type=tmpfs,target=/t,colour=red",
                "shoal/demo-web",
            ],
            "unknown field \"colour\"",
        ),
        (
            &["--name", "i", "--cap-add", "fly", "shoal/demo-web"],
            "unknown capability \"CAP_FLY\"",
        ),
        (
            &[
                "--name",
                "j",
                "--sysctl",
                "kernel.hostname=x",
                "shoal/demo-web",
            ],
            "only namespaced sysctls",
        ),
        (
            &["--name", "k", "--host", "db", "shoal/demo-web"],
            "use NAME:IP",
        ),
    ];
    for (args, why) in cases {
        let mut full = vec!["service", "create", "-d"];
        full.extend_from_slice(args);
        lab.refused("manager1", &full, why);
    }
    let ls = common::parse_table(&lab.ok("manager1", &["service", "ls"]));
    assert_eq!(ls.len(), 1, "a refused spec was written: {ls:?}");

    // A sound setting the process runtime cannot give is refused by the node, by name,
    // never run without it.
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "mounted",
            "--mount",
            "type=tmpfs,target=/scratch",
            "--init",
            "shoal/demo-web",
        ],
    );
    wait_for(Duration::from_secs(10), "the task to be rejected", || {
        lab.tasks("mounted")
            .iter()
            .any(|t| {
                t["CURRENT STATE"].starts_with("Rejected")
                    && t["ERROR"].contains("the process runtime cannot honour Mounts, Init")
            })
            .then_some(())
    });
}

#[test]
fn docker_runtime_runs_labelled_containers_and_replaces_removed_ones() {
    let lab = Lab::up_with("svc-docker", 26, 3, 1, "1s", "docker");
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "dweb",
            "--replicas",
            "3",
            "--limit-memory",
            "50M",
            "shoal/demo-web",
        ],
    );
    let tasks = lab.wait_running("dweb", 3);
    let ids = docker(&[
        "ps",
        "-q",
        "--filter",
        "label=com.docker.swarm.service.name=dweb",
    ]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 3);
    let c = ids[0];
    let facts = docker(&[
        "inspect",
        "-f",
        "{{.Name}} {{.HostConfig.NetworkMode}} {{.HostConfig.Memory}} {{.Config.Hostname}}",
        c,
    ]);
    let facts: Vec<&str> = facts.split_whitespace().collect();
    assert!(
        facts[0].starts_with("/dweb.")
            && tasks.iter().any(|(id, _)| facts[0].ends_with(id.as_str())),
        "{facts:?}"
    );
    assert_eq!(facts[1], "none");
    assert_eq!(facts[2], (50 * 1024 * 1024).to_string());
    let hello = docker(&["exec", c, "wget", "-qO-", "http://127.0.0.1/"]);
    assert_eq!(hello.trim(), format!("Hello from {}", facts[3]));

    docker(&["rm", "-f", c]);
    wait_for(
        Duration::from_secs(20),
        "a replacement for the removed container",
        || {
            let now = docker(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=dweb",
            ]);
            (now.lines().count() == 3 && !now.lines().any(|l| l == c)).then_some(())
        },
    );

    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "missing",
            "no/such-image",
        ],
    );
    wait_for(Duration::from_secs(10), "the task to be rejected", || {
        let rows = lab.tasks("missing");
        rows.iter()
            .any(|t| {
                t["CURRENT STATE"].starts_with("Rejected")
                    && t["ERROR"].contains("No such image: no/such-image")
            })
            .then_some(())
    });
    // A container whose healthcheck fails is stopped, counted as failed, and replaced.
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "sick",
            "--restart-delay",
            "0s",
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "shoal/demo-web",
        ],
    );
    wait_for(
        Duration::from_secs(20),
        "the unhealthy task to be replaced",
        || {
            let rows = lab.tasks("sick");
            rows.iter()
                .any(|t| {
                    t["CURRENT STATE"].starts_with("Failed")
                        && t["ERROR"].contains("unhealthy container")
                })
                .then_some(())
        },
    );
    drop(lab);
    let left = docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.swarm.service.name=dweb",
    ]);
    assert!(left.trim().is_empty(), "lab down left containers: {left}");
}

fn inspect(lab: &Lab, service: &str) -> serde_json::Value {
    let out = lab.ok("manager1", &["service", "inspect", service]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

#[test]
fn rolling_update_goes_in_batches_and_rollback_restores_the_old_spec() {
    let lab = Lab::up("svc-update", 27, 3, 1, "1s");
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "4",
            "--restart-delay",
            "0s",
            "shoal/demo-web",
        ],
    );
    lab.wait_running("web", 4);

    // Watch the service while the update runs: with parallelism 2, at least 2 of the 4
    // tasks run at every moment.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let name = lab.name.clone();
        std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            let mut images_seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = common::shoal(&[
                    "lab",
                    "exec",
                    "--name",
                    &name,
                    "manager1",
                    "--",
                    common::shoal_bin().to_str().unwrap(),
                    "service",
                    "ps",
                    "web",
                ]);
                let rows = common::parse_table(&String::from_utf8_lossy(&out.stdout));
                let running: Vec<_> = rows
                    .iter()
                    .filter(|t| {
                        t["DESIRED STATE"] == "Running" && t["CURRENT STATE"].starts_with("Running")
                    })
                    .collect();
                fewest = fewest.min(running.len());
                images_seen.insert(
                    running
                        .iter()
                        .map(|t| t["IMAGE"].clone())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            (fewest, images_seen)
        })
    };
    let started = std::time::Instant::now();
    let out = lab.ok(
        "manager1",
        &[
            "service",
            "update",
            "--update-parallelism",
            "2",
            "--update-delay",
            "1s",
            "--update-monitor",
            "1s",
            "--image",
            "shoal/demo-web:latest",
            "web",
        ],
    );
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (fewest, mixes) = watcher.join().unwrap();
    assert!(out.contains("verify: Service converged"), "{out}");
    assert!(
        fewest >= 2,
        "only {fewest} tasks ran at one point of the update"
    );
    // Two batches, each monitored for 1 s, with a 1 s delay between them.
    assert!(
        took >= Duration::from_secs(3),
        "the update took only {took:?}"
    );
    assert!(
        mixes
            .iter()
            .any(|m| m.contains("shoal/demo-web:latest") && m.contains("shoal/demo-web,")),
        "never saw a half-updated service: {mixes:?}"
    );
    let running = lab
        .tasks("web")
        .into_iter()
        .filter(|t| t["DESIRED STATE"] == "Running")
        .collect::<Vec<_>>();
    assert!(
        running
            .iter()
            .all(|t| t["IMAGE"] == "shoal/demo-web:latest"),
        "{running:?}"
    );
    assert_eq!(inspect(&lab, "web")["UpdateStatus"]["State"], "completed");

    // `service rollback` goes back to the spec before the last update.
    let out = lab.ok("manager1", &["service", "rollback", "web"]);
    assert!(out.contains("verify: Service converged"), "{out}");
    let running = lab
        .tasks("web")
        .into_iter()
        .filter(|t| t["DESIRED STATE"] == "Running")
        .collect::<Vec<_>>();
    assert!(
        running.len() == 4 && running.iter().all(|t| t["IMAGE"] == "shoal/demo-web"),
        "{running:?}"
    );

    // A new spec whose tasks fail is rolled back, touching no more than one batch.
    let out = lab.exec(
        "manager1",
        &[
            "service",
            "update",
            "--update-parallelism",
            "2",
            "--update-monitor",
            "2s",
            "--update-failure-action",
            "rollback",
            "--args",
            "sh -c false",
            "web",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("update rolled back due to failure"),
        "{}",
        text(&out)
    );
    let svc = inspect(&lab, "web");
    assert_eq!(svc["UpdateStatus"]["State"], "rollback_completed");
    assert_eq!(
        svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"],
        serde_json::Value::Null,
        "the rolled-back spec has no args (left out when empty, as dockerd does)"
    );
    lab.wait_running("web", 4);
    let failed_slots: std::collections::BTreeSet<String> = lab
        .tasks("web")
        .into_iter()
        .filter(|t| t["CURRENT STATE"].starts_with("Failed"))
        .map(|t| {
            t["NAME"]
                .trim_start_matches(" \\_ ")
                .trim_start_matches("\\_ ")
                .to_string()
        })
        .collect();
    assert!(
        !failed_slots.is_empty() && failed_slots.len() <= 2,
        "{failed_slots:?}"
    );
}

#[test]
fn service_logs_show_every_tasks_output() {
    let lab = Lab::up("svc-logs", 28, 3, 1, "1s");
    let script =
        "i=0; while true; do echo \"line $i from $(hostname)\"; i=$((i+1)); sleep 0.2; done";
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "talk",
            "--replicas",
            "3",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    let tasks = lab.wait_running("talk", 3);
    let logs = wait_for(Duration::from_secs(10), "output from every task", || {
        let out = lab.ok("manager1", &["service", "logs", "talk"]);
        tasks
            .iter()
            .all(|(id, _)| out.contains(&format!("from {}", &id[..12])))
            .then_some(out)
    })
    .0;
    for (id, node) in &tasks {
        let prefix = format!(".{}@{node}    | line ", &id[..12]);
        assert!(
            logs.lines()
                .any(|l| l.starts_with("talk.") && l.contains(&prefix)),
            "no line with {prefix:?} in:\n{logs}"
        );
    }
    let tail = lab.ok("manager1", &["service", "logs", "--tail", "1", "talk"]);
    assert_eq!(tail.lines().count(), 3, "{tail}");

    // Every line carries the time it was written: --timestamps shows it, --since leaves
    // out what came before (the process runtime stamps lines as dockerd does).
    let time_of = |line: &str| {
        line.split_once(' ')
            .and_then(|(t, _)| shoal_proto::time::parse_rfc3339(t))
            .unwrap_or_else(|| panic!("no time leads {line:?}"))
    };
    let now = shoal_proto::now_nanos;
    let stamped = lab.ok(
        "manager1",
        &["service", "logs", "-t", "--tail", "2", "talk"],
    );
    assert_eq!(stamped.lines().count(), 6, "{stamped}");
    for line in stamped.lines() {
        let age = now() - time_of(line);
        assert!((0..60_000_000_000).contains(&age), "{line}: {age} ns old");
    }
    let mark = now();
    std::thread::sleep(Duration::from_millis(1500));
    let since = shoal_proto::time::rfc3339(mark);
    let recent = lab.ok(
        "manager1",
        &["service", "logs", "-t", "--since", &since, "talk"],
    );
    let everything = lab.ok("manager1", &["service", "logs", "talk"]);
    assert!(
        recent.lines().count() >= 6,
        "too little since {since}:\n{recent}"
    );
    assert!(recent.lines().count() < everything.lines().count());
    for line in recent.lines() {
        assert!(time_of(line) >= mark, "{line} is older than {since}");
    }
    // The docker CLI asks the same through the Engine API (it turns 1s into a time).
    let out = lab.docker_ok(
        "manager1",
        &["service", "logs", "--timestamps", "--since", "1s", "talk"],
    );
    assert!(out.lines().count() >= 3, "{out}");
    for line in out.lines() {
        assert!(
            line.contains(" talk.") && line.contains("| line "),
            "{line}"
        );
        assert!(now() - time_of(line) < 30_000_000_000, "{line}");
    }

    // Following shows output written after the command started.
    let out = std::process::Command::new("timeout")
        .args([
            "2",
            common::shoal_bin().to_str().unwrap(),
            "lab",
            "exec",
            "--name",
            &lab.name,
            "manager1",
            "--",
        ])
        .arg(common::shoal_bin())
        .args(["service", "logs", "-f", "--tail", "0", "talk"])
        .output()
        .unwrap();
    let followed = String::from_utf8_lossy(&out.stdout);
    assert!(
        followed.lines().count() >= 3,
        "following printed only:\n{followed}"
    );

    let out = lab.exec("manager1", &["service", "logs", "nosuch"]);
    assert!(
        text(&out).contains("service nosuch not found"),
        "{}",
        text(&out)
    );
}

/// A named volume the test owns, removed even when the test fails.
struct OwnedVolume(String);

impl Drop for OwnedVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

/// The one running container of `service` on the lab's dockerd.
fn container_of(service: &str) -> String {
    wait_for(
        Duration::from_secs(20),
        &format!("one container of {service}"),
        || {
            let ids = docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ]);
            let ids: Vec<&str> = ids.lines().collect();
            (ids.len() == 1).then(|| ids[0].to_string())
        },
    )
    .0
}

fn inspect_container(id: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&docker(&["inspect", id])).unwrap();
    doc[0].clone()
}

#[test]
fn what_a_container_engine_gives_a_task_reaches_the_container() {
    // Declared before the lab, so it is removed after the lab's containers are.
    let volume = OwnedVolume(format!("svc-engine-{}", std::process::id()));
    let lab = Lab::up_with("svc-engine", 96, 1, 1, "1s", "docker");
    let mount_volume = format!(
        "type=volume,source={},target=/vol,volume-label=owner=svc-engine",
        volume.0
    );
    // Through the docker CLI and shoal's Engine API, as a Swarm user would.
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "tuned",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=16M",
            "--mount",
            &mount_volume,
            "--mount",
            "type=volume,target=/anon",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "MKNOD",
            "--init",
            "--read-only",
            "--host",
            "db:10.0.0.5",
            "--dns-search",
            "example.org",
            "--dns-option",
            "timeout:2",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--group",
            "1234",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--ulimit",
            "nofile=1024:2048",
            "--limit-pids",
            "200",
            "--oom-score-adj",
            "100",
            "-e",
            "WWW=/scratch",
            "shoal/demo-web",
        ],
    );
    lab.wait_running("tuned", 1);
    let c = container_of("tuned");
    let info = inspect_container(&c);
    let host = &info["HostConfig"];
    assert_eq!(host["CapAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["CAP_MKNOD"]));
    assert_eq!(host["Init"], true);
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["ExtraHosts"], serde_json::json!(["db:10.0.0.5"]));
    assert_eq!(host["Sysctls"]["net.ipv4.ip_forward"], "1");
    assert_eq!(host["GroupAdd"], serde_json::json!(["1234"]));
    assert_eq!(host["DnsSearch"], serde_json::json!(["example.org"]));
    assert_eq!(host["DnsOptions"], serde_json::json!(["timeout:2"]));
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "1m");
    assert_eq!(
        host["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    assert_eq!(host["PidsLimit"], 200);
    assert_eq!(host["OomScoreAdj"], 100);
    let mounts = info["Mounts"].as_array().unwrap().clone();
    let named = mounts
        .iter()
        .find(|m| m["Destination"] == "/vol")
        .expect("/vol");
    assert_eq!(named["Name"], volume.0.as_str());
    let anonymous = mounts
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .expect("/anon")["Name"]
        .as_str()
        .unwrap()
        .to_string();
    let labels = docker(&["volume", "inspect", "-f", "{{json .Labels}}", &volume.0]);
    assert!(labels.contains("\"owner\":\"svc-engine\""), "{labels}");
    // Inside: the page is served from the tmpfs on a read-only root, the hosts entry is
    // there, and PID 1 is docker's init.
    let hello = docker(&["exec", &c, "wget", "-qO-", "http://127.0.0.1/"]);
    assert!(hello.starts_with("Hello from "), "{hello}");
    assert!(docker(&["exec", &c, "cat", "/etc/hosts"]).contains("10.0.0.5\tdb"));
    assert_eq!(
        docker(&["exec", &c, "cat", "/proc/1/comm"]).trim(),
        "docker-init"
    );
    // The limits hold inside: the open-files limit, as `ulimit -n` reads it.
    assert_eq!(
        docker(&["exec", &c, "sh", "-c", "ulimit -n"]).trim(),
        "1024"
    );
    let write = std::process::Command::new("docker")
        .args(["exec", &c, "touch", "/not-here"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "the root filesystem is writable");

    // Shown back as dockerd shows them, so the docker CLI's own views work.
    let doc: serde_json::Value =
        serde_json::from_str(&lab.docker_ok("manager1", &["service", "inspect", "tuned"])).unwrap();
    let spec = &doc[0]["Spec"]["TaskTemplate"];
    assert_eq!(spec["ContainerSpec"]["Mounts"][0]["Type"], "tmpfs");
    assert_eq!(
        spec["ContainerSpec"]["Mounts"][0]["TmpfsOptions"]["SizeBytes"],
        16 << 20
    );
    assert_eq!(spec["LogDriver"]["Name"], "json-file");
    let pretty = lab.docker_ok("manager1", &["service", "inspect", "--pretty", "tuned"]);
    assert!(
        pretty.contains("Mounts:") && pretty.contains("/scratch"),
        "{pretty}"
    );

    // Edits: the docker CLI's -rm/-add forms, then shoal's.
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "update",
            "-d",
            "--mount-rm",
            "/vol",
            "--cap-drop",
            "NET_ADMIN",
            "tuned",
        ],
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "update",
            "-d",
            "--host-add",
            "cache:10.0.0.6",
            "tuned",
        ],
    );
    let updated = wait_for(Duration::from_secs(30), "the updated container", || {
        let c = container_of("tuned");
        let info = inspect_container(&c);
        let hosts = info["HostConfig"]["ExtraHosts"].to_string();
        (hosts.contains("cache:10.0.0.6")).then_some(info)
    })
    .0;
    let mounts = updated["Mounts"].to_string();
    assert!(!mounts.contains("\"/vol\""), "{mounts}");
    assert!(
        updated["HostConfig"]["CapAdd"].is_null(),
        "{}",
        updated["HostConfig"]["CapAdd"]
    );
    assert_eq!(
        updated["HostConfig"]["CapDrop"],
        serde_json::json!(["CAP_MKNOD"])
    );

    // A task on an overlay asks the node's resolver, which sends names outside the
    // cluster to the task's own nameservers (--dns), not the node's.
    let log = lab.dir().join("dnsmasq.log");
    let _upstream = common::Upstream::start("10.239.96.1", &log);
    lab.docker_ok(
        "manager1",
        &["network", "create", "-d", "overlay", "engnet"],
    );
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "asker",
            "--network",
            "engnet",
            "--dns",
            "10.239.96.1",
            "shoal/demo-web",
        ],
    );
    lab.wait_running("asker", 1);
    let asker = container_of("asker");
    let resolved = wait_for(
        Duration::from_secs(15),
        "outside.test through --dns",
        || {
            let out = std::process::Command::new("docker")
                .args(["exec", &asker, "nslookup", "outside.test"])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            out.contains("192.0.2.7").then_some(out)
        },
    )
    .0;
    assert!(resolved.contains("127.0.0.11"), "{resolved}");
    let info = inspect_container(&asker);
    assert_eq!(info["HostConfig"]["Dns"], serde_json::json!(["127.0.0.11"]));

    // dockerd's own line times come through service logs.
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "echoer",
            "--entrypoint",
            "sh",
            "shoal/demo-web",
            "-c",
            "echo hello from dockerd; exec sleep 600",
        ],
    );
    let logs = wait_for(Duration::from_secs(20), "the echoer's line", || {
        let out = lab.docker_ok("manager1", &["service", "logs", "--timestamps", "echoer"]);
        out.contains("hello from dockerd").then_some(out)
    })
    .0;
    let (time, rest) = logs.trim().split_once(' ').unwrap();
    let written = shoal_proto::time::parse_rfc3339(time).unwrap_or_else(|| panic!("{logs}"));
    assert!(
        shoal_proto::now_nanos() - written < 60_000_000_000,
        "{logs}"
    );
    assert!(
        rest.starts_with("echoer.1.") && rest.ends_with("| hello from dockerd"),
        "{logs}"
    );

    // Privileges become dockerd's security options.
    let (code, answer) = lab.engine_api(
        "manager1",
        "POST",
        "/v1.50/services/create",
        Some(
            r#"{"Name":"strict","TaskTemplate":{"ContainerSpec":{"Image":"shoal/demo-web",
                "Privileges":{"NoNewPrivileges":true,"Seccomp":{"Mode":"unconfined"}}}}}"#,
        ),
    );
    assert_eq!(code, 201, "{answer}");
    lab.wait_running("strict", 1);
    let strict = container_of("strict");
    assert_eq!(
        inspect_container(&strict)["HostConfig"]["SecurityOpt"],
        serde_json::json!(["seccomp=unconfined", "no-new-privileges=true"])
    );
    let status = docker(&["exec", &strict, "cat", "/proc/1/status"]);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");

    // A platform no node has leaves the task pending, and says so.
    let (code, _) = lab.engine_api(
        "manager1",
        "POST",
        "/v1.50/services/create",
        Some(r#"{"Name":"armonly","TaskTemplate":{"ContainerSpec":{"Image":"shoal/demo-web"},"Placement":{"Platforms":[{"Architecture":"arm64","OS":"linux"}]}}}"#),
    );
    assert_eq!(code, 201);
    wait_for(Duration::from_secs(10), "the platform refusal", || {
        lab.tasks("armonly")
            .iter()
            .any(|t| t["ERROR"].contains("unsupported platform on 1 node"))
            .then_some(())
    });

    drop(lab);
    // The task's anonymous volume went with it; the named one stays until its owner
    // removes it, as in Swarm.
    let gone = std::process::Command::new("docker")
        .args(["volume", "inspect", &anonymous])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "the anonymous volume {anonymous} was left behind"
    );
    docker(&["volume", "inspect", &volume.0]);
}

/// The most tasks whose output spans overlap, from `service logs -t` lines that each task
/// writes at its start ("start") and end ("end").
fn most_at_once(logs: &str) -> usize {
    let mut events: Vec<(String, i32)> = Vec::new();
    for line in logs.lines() {
        let Some((time, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest.ends_with("| start") {
            events.push((time.to_string(), 1));
        } else if rest.ends_with("| end") {
            events.push((time.to_string(), -1));
        }
    }
    // RFC 3339 with nanoseconds, in UTC: text order is time order; an end before a
    // start at the same instant.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn jobs_run_to_completion_at_most_max_concurrent_at_once_and_again_when_forced() {
    let lab = Lab::up("svc-jobs", 105, 3, 1, "1s");
    // `service create` waits until the job has completed.
    let out = lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "batch",
            "--mode",
            "replicated-job",
            "--replicas",
            "5",
            "--max-concurrent",
            "2",
            "busybox",
            "sh",
            "-c",
            "echo start; sleep 1; echo end",
        ],
    );
    assert!(out.contains("job complete"), "{out}");
    let ls = common::parse_table(&lab.ok("manager1", &["service", "ls"]));
    let row = ls.iter().find(|r| r["NAME"] == "batch").expect("listed");
    assert_eq!(
        (row["MODE"].as_str(), row["REPLICAS"].as_str()),
        ("replicated job", "0/0 (5/5 completed)")
    );
    let tasks = lab.tasks("batch");
    assert_eq!(tasks.len(), 5, "{tasks:?}");
    assert!(
        tasks.iter().all(|t| t["DESIRED STATE"] == "Complete"
            && t["CURRENT STATE"].starts_with("Complete")),
        "{tasks:?}"
    );
    let logs = lab.ok("manager1", &["service", "logs", "-t", "batch"]);
    assert_eq!(logs.matches("| end").count(), 5, "{logs}");
    assert_eq!(
        most_at_once(&logs),
        2,
        "never more than 2 at once, and 2 used: {logs}"
    );

    // Forced, the job runs again: a new iteration of 5 more completions.
    let out = lab.ok("manager1", &["service", "update", "--force", "batch"]);
    assert!(out.contains("job complete"), "{out}");
    assert_eq!(
        lab.inspect("batch")["JobStatus"]["JobIteration"]["Index"],
        2
    );
    let done = lab
        .tasks("batch")
        .into_iter()
        .filter(|t| t["CURRENT STATE"].starts_with("Complete"))
        .count();
    assert_eq!(done, 10);

    // A failed task is run again per the restart policy (here: once it fails).
    let flag = lab.dir().join("flaky-ran");
    let script = format!(
        "if [ -f {0} ]; then echo second; else touch {0}; exit 3; fi",
        flag.display()
    );
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "flaky",
            "--mode",
            "replicated-job",
            "--restart-delay",
            "1s",
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    );
    let tasks = lab.tasks("flaky");
    assert!(
        tasks
            .iter()
            .any(|t| t["CURRENT STATE"].starts_with("Failed")
                && t["ERROR"].contains("non-zero exit (3)")),
        "{tasks:?}"
    );
    assert!(
        tasks
            .iter()
            .any(|t| t["CURRENT STATE"].starts_with("Complete"))
    );

    // A global job: once on every node. Through the docker CLI too.
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "everywhere",
            "--mode",
            "global-job",
            "busybox",
            "true",
        ],
    );
    let ls = common::parse_table(&lab.ok("manager1", &["service", "ls"]));
    let row = ls
        .iter()
        .find(|r| r["NAME"] == "everywhere")
        .expect("listed");
    assert_eq!(row["REPLICAS"], "0/0 (3/3 completed)");
    let out = lab.docker(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "dockerjob",
            "--mode",
            "replicated-job",
            "--replicas",
            "3",
            "--max-concurrent",
            "3",
            "busybox",
            "true",
        ],
    );
    assert!(
        out.status.success() && text(&out).contains("job complete"),
        "{}",
        text(&out)
    );
    let ls = lab.docker_ok(
        "manager1",
        &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
    );
    assert!(ls.contains("dockerjob 0/0 (3/3 completed)"), "{ls}");
}

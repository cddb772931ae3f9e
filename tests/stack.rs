//! Stacks: compose files deployed with `docker stack deploy` (through the Engine API) and
//! with `shoal stack deploy`, which make the same services and networks.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Lab, dig, parse_table, shoal_env, text, wait_for};

/// Docker's getting-started Part 3 file, with the demo image.
const GETTING_STARTED: &str = include_str!("../examples/docker-compose.yml");
/// Docker's get-started Part 5 file: images, the manager's socket and redis's data
/// directory come from variables.
const PART5: &str = include_str!("../examples/get-started-part5.yml");

fn write(lab: &Lab, file: &str, text: &str) -> String {
    let path = lab.dir().join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The addresses `name` resolves to inside the task's namespace, once they are the VIP
/// of `service` there (the resolver learns the service through gossip).
fn resolves_to_vip(lab: &Lab, ns: &str, name: &str, service: &str) -> BTreeSet<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["service", "inspect", service])).unwrap();
    let vips: BTreeSet<String> = doc[0]["Endpoint"]["VirtualIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["Addr"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    wait_for(
        Duration::from_secs(10),
        &format!("{name} to resolve to a VIP of {service}"),
        || {
            let got = dig(ns, &[name]);
            (got.len() == 1 && got.is_subset(&vips)).then_some(got)
        },
    )
    .0
}

#[test]
fn docker_stack_deploy_runs_the_getting_started_stack_and_stack_rm_removes_it() {
    let lab = Lab::up("stk-docker", 85, 3, 1, "1s");
    let file = write(&lab, "docker-compose.yml", GETTING_STARTED);
    let out = lab.docker(
        "manager1",
        &["stack", "deploy", "-c", &file, "getstartedlab"],
    );
    assert!(out.status.success(), "stack deploy: {}", text(&out));
    assert!(
        text(&out).contains("Creating network getstartedlab_webnet"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("Creating service getstartedlab_web"),
        "{}",
        text(&out)
    );
    let tasks = lab.wait_running("getstartedlab_web", 5);
    let hosts: BTreeSet<&str> = tasks.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(hosts.len(), 3, "spread over every node: {tasks:?}");

    let stacks = parse_table(&lab.docker_ok("manager1", &["stack", "ls"]));
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(
        (stacks[0]["NAME"].as_str(), stacks[0]["SERVICES"].as_str()),
        ("getstartedlab", "1")
    );
    let ps = parse_table(&lab.ok("manager1", &["stack", "ps", "getstartedlab"]));
    assert_eq!(
        ps.iter()
            .filter(|t| t["CURRENT STATE"].starts_with("Running"))
            .count(),
        5,
        "{ps:?}"
    );

    // Every node answers on 4000, and together they reach all 5 replicas.
    lab.wait_mesh(&[1, 2, 3], 4000, 10, 5);

    // Inside the stack, the short name and the full name are the same service (#5).
    let (task, node) = &tasks[0];
    let ns = lab.task_ns(node, task);
    let short = resolves_to_vip(&lab, &ns, "web", "getstartedlab_web");
    let full = resolves_to_vip(&lab, &ns, "getstartedlab_web", "getstartedlab_web");
    assert_eq!(short, full);

    let out = lab.docker_ok("manager1", &["stack", "rm", "getstartedlab"]);
    assert!(out.contains("Removing service getstartedlab_web"), "{out}");
    assert!(
        out.contains("Removing network getstartedlab_webnet"),
        "{out}"
    );
    assert_eq!(
        lab.ok("manager1", &["service", "ls"]).lines().count(),
        1,
        "no service is left"
    );
    assert!(
        !lab.ok("manager1", &["network", "ls"])
            .contains("getstartedlab"),
        "no network is left"
    );
    wait_for(Duration::from_secs(10), "port 4000 to close", || {
        (1..=3)
            .all(|i| lab.http_get(i, 4000).is_none())
            .then_some(())
    });
    assert!(
        lab.ok("manager1", &["stack", "ls"]).lines().count() == 1,
        "no stack is listed"
    );
}

const APP: &str = r#"version: "3.8"
services:
  front:
    image: shoal/demo-web
    environment:
      ROLE: front
    ports:
      - "4100:80"
    networks: [app]
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
  back:
    image: shoal/demo-web
    command: ["sh", "-c", "exec sleep 600"]
    networks: [app, default]
    deploy:
      mode: global
networks:
  app:
    labels:
      purpose: demo
"#;

#[test]
fn shoal_stack_deploy_updates_prunes_and_refuses_what_it_cannot_run() {
    let lab = Lab::up("stk-shoal", 86, 2, 1, "1s");
    let file = write(&lab, "app.yml", APP);
    let out = lab.ok("manager1", &["stack", "deploy", "-c", &file, "s1"]);
    for want in [
        "Creating network s1_app",
        "Creating network s1_default",
        "Creating service s1_front",
        "Creating service s1_back",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    lab.wait_running("s1_front", 2);
    let backs = lab.wait_running("s1_back", 2);
    // The docker CLI sees the stack shoal made.
    let services = parse_table(&lab.docker_ok("manager1", &["stack", "services", "s1"]));
    let names: BTreeSet<&str> = services.iter().map(|s| s["NAME"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["s1_back", "s1_front"]));
    let nets = lab.docker_ok("manager1", &["network", "inspect", "s1_app"]);
    let nets: serde_json::Value = serde_json::from_str(&nets).unwrap();
    assert_eq!(nets[0]["Labels"]["purpose"], "demo");
    assert_eq!(nets[0]["Labels"]["com.docker.stack.namespace"], "s1");
    let doc: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["service", "inspect", "s1_front"])).unwrap();
    assert_eq!(
        doc[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"],
        serde_json::json!(["ROLE=front"])
    );
    assert_eq!(doc[0]["Spec"]["UpdateConfig"]["Order"], "start-first");
    lab.wait_mesh(&[1, 2], 4100, 8, 2);

    // back reaches front by its short name and by its full name, on their shared network.
    let (task, node) = &backs[0];
    let ns = lab.task_ns(node, task);
    assert_eq!(
        resolves_to_vip(&lab, &ns, "front", "s1_front"),
        resolves_to_vip(&lab, &ns, "s1_front", "s1_front")
    );

    // A file shoal cannot run is refused by name, and nothing changes.
    let bad = write(
        &lab,
        "bad.yml",
        &APP.replace(
            "    networks: [app]\n",
            "    networks: [app]\n    privileged: true\n",
        ),
    );
    lab.refused(
        "manager1",
        &["stack", "deploy", "-c", &bad, "s1"],
        "services.front.privileged is not supported",
    );
    assert_eq!(lab.wait_running("s1_front", 2).len(), 2);

    // Redeploy: front scaled to 3, back gone from the file and pruned.
    let scaled = APP.replace("replicas: 2", "replicas: 3");
    let scaled = &scaled[..scaled.find("  back:").unwrap()];
    let next = write(
        &lab,
        "app2.yml",
        &format!("{scaled}networks:\n  app:\n    labels:\n      purpose: demo\n"),
    );
    let out = lab.ok(
        "manager1",
        &["stack", "deploy", "--prune", "-c", &next, "s1"],
    );
    assert!(out.contains("Updating service s1_front"), "{out}");
    assert!(out.contains("Removing service s1_back"), "{out}");
    lab.wait_running("s1_front", 3);
    wait_for(Duration::from_secs(10), "s1_back to go", || {
        (!lab.ok("manager1", &["service", "ls"]).contains("s1_back")).then_some(())
    });

    let out = lab.ok("manager1", &["stack", "rm", "s1"]);
    assert!(out.contains("Removing service s1_front"), "{out}");
    assert!(out.contains("Removing network s1_app"), "{out}");
    assert!(out.contains("Removing network s1_default"), "{out}");
    assert_eq!(
        lab.ok("manager1", &["stack", "ls"]).lines().count(),
        1,
        "no stack is left"
    );
    let nets = lab.ok("manager1", &["network", "ls"]);
    assert!(!nets.contains("s1_"), "{nets}");
}

/// Inline redis commands to `addr`, one reply line each.
fn redis(addr: &str, commands: &[&str]) -> Result<Vec<String>, String> {
    use std::io::{BufRead, BufReader, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut replies = Vec::new();
    for c in commands {
        writer
            .write_all(format!("{c}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        replies.push(line.trim_end().to_string());
    }
    Ok(replies)
}

#[test]
fn docker_stack_deploy_runs_the_get_started_part5_stack_with_its_mounts() {
    let lab = Lab::up_with("stk-part5", 99, 3, 1, "1s", "docker");
    let file = write(&lab, "get-started-part5.yml", PART5);
    let data = lab.dir().join("redis-data");
    std::fs::create_dir_all(&data).unwrap();
    let socket = lab.node("manager1").docker_socket();
    let env = [
        ("WEB_IMAGE", "shoal/demo-web"),
        ("VISUALIZER_IMAGE", "shoal/visualizer-standin"),
        ("REDIS_IMAGE", "shoal/redis-standin"),
        ("DOCKER_SOCKET", socket.to_str().unwrap()),
        ("REDIS_DATA", data.to_str().unwrap()),
    ];
    let deploy = [
        "lab",
        "exec",
        "--name",
        &lab.name,
        "manager1",
        "--",
        "docker",
        "stack",
        "deploy",
        "-c",
        &file,
        "getstartedlab",
    ];
    let out = shoal_env(&env, &deploy);
    assert!(out.status.success(), "stack deploy: {}", text(&out));
    lab.wait_running("getstartedlab_web", 5);
    // The visualizer and redis are held to the manager, as the file says.
    for service in ["getstartedlab_visualizer", "getstartedlab_redis"] {
        let tasks = lab.wait_running(service, 1);
        assert_eq!(tasks[0].1, "manager1", "{service}: {tasks:?}");
    }
    lab.wait_mesh(&[1, 2, 3], 80, 10, 5);

    // The visualizer reads the swarm through the socket bind-mounted into it, and any
    // node's 8080 reaches it.
    let page = wait_for(Duration::from_secs(30), "the visualizer's page", || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://{}:8080/", lab.ip(3)),
            ])
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        (page.contains("getstartedlab_web 5/5")).then_some(page)
    })
    .0;
    for node in ["manager1", "worker1", "worker2"] {
        assert!(page.contains(&format!("{node} Ready Active")), "{page}");
    }

    // redis, reached through a worker, writes into the manager's directory...
    let at = |node: u32| format!("{}:6379", lab.ip(node));
    let replies = wait_for(Duration::from_secs(20), "redis through the mesh", || {
        redis(&at(2), &["PING", "INCR hits", "INCR hits"]).ok()
    })
    .0;
    assert_eq!(replies, ["+PONG", ":1", ":2"]);
    let aof = std::fs::read_to_string(data.join("appendonly.aof")).unwrap();
    assert_eq!(
        aof.lines().filter(|l| *l == "INCR hits").count(),
        2,
        "{aof}"
    );
    // ...which outlives the task: a new one counts on.
    lab.docker_ok(
        "manager1",
        &["service", "update", "-d", "--force", "getstartedlab_redis"],
    );
    lab.wait_update_completed("getstartedlab_redis", Duration::from_secs(30));
    let replies = wait_for(Duration::from_secs(20), "redis after the update", || {
        redis(&at(3), &["INCR hits"]).ok()
    })
    .0;
    assert_eq!(replies, [":3"]);

    let doc: serde_json::Value = serde_json::from_str(
        &lab.docker_ok("manager1", &["service", "inspect", "getstartedlab_redis"]),
    )
    .unwrap();
    let mount = &doc[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"][0];
    assert_eq!(
        (
            mount["Type"].as_str(),
            mount["Source"].as_str(),
            mount["Target"].as_str()
        ),
        (Some("bind"), data.to_str(), Some("/data"))
    );
    let out = lab.docker_ok("manager1", &["stack", "rm", "getstartedlab"]);
    assert!(
        out.contains("Removing service getstartedlab_redis"),
        "{out}"
    );
}

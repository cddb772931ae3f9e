//! The real docker CLI drives shoal through the Docker Engine API each daemon serves on
//! <run-dir>/docker.sock (`shoal lab exec` points DOCKER_HOST at it), and the state it
//! makes is the state the `shoal` CLI sees.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{Lab, parse_table, text, wait_for};

fn row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    col: &str,
    value: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("no row with {col} = {value} in {rows:?}"))
}

#[test]
fn the_docker_cli_drives_the_cluster() {
    let lab = Lab::up("eng-cli", 81, 3, 1, "1s");
    let info = lab.docker_ok("manager1", &["info"]);
    for want in [
        "Swarm: active",
        "Is Manager: true",
        "Managers: 1",
        "Nodes: 3",
    ] {
        assert!(info.contains(want), "docker info lacks {want:?}:\n{info}");
    }

    let nodes = parse_table(&lab.docker_ok("manager1", &["node", "ls"]));
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        nodes
            .iter()
            .all(|n| n["STATUS"] == "Ready" && n["AVAILABILITY"] == "Active")
    );
    assert_eq!(
        row(&nodes, "MANAGER STATUS", "Leader")["HOSTNAME"],
        "manager1"
    );
    let me: Vec<_> = nodes.iter().filter(|n| n["ID"].ends_with('*')).collect();
    assert_eq!(me.len(), 1, "docker marks the node it talks to: {nodes:?}");
    assert_eq!(me[0]["HOSTNAME"], "manager1");
    let inspected: serde_json::Value =
        serde_json::from_str(&lab.docker_ok("manager1", &["node", "inspect", "worker1"])).unwrap();
    assert_eq!(inspected[0]["Description"]["Hostname"], "worker1");
    assert_eq!(inspected[0]["Spec"]["Role"], "worker");

    lab.docker_ok(
        "manager1",
        &["network", "create", "-d", "overlay", "webnet"],
    );
    let nets = parse_table(&lab.docker_ok("manager1", &["network", "ls"]));
    let webnet = row(&nets, "NAME", "webnet");
    assert_eq!(
        (webnet["DRIVER"].as_str(), webnet["SCOPE"].as_str()),
        ("overlay", "swarm")
    );
    assert!(
        lab.ok("manager1", &["network", "ls"]).contains("webnet"),
        "shoal sees docker's network"
    );

    // Attached (no -d): the CLI follows the tasks until the service converges.
    let created = lab.docker(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--network",
            "webnet",
            "shoal/demo-web",
        ],
    );
    assert!(
        created.status.success(),
        "service create: {}",
        text(&created)
    );
    assert!(text(&created).contains("converged"), "{}", text(&created));
    let services = parse_table(&lab.docker_ok("manager1", &["service", "ls"]));
    let web = row(&services, "NAME", "web");
    assert_eq!(web["MODE"], "replicated");
    assert_eq!(web["REPLICAS"], "3/3");
    assert_eq!(web["PORTS"], "*:8080->80/tcp");
    let shoal_view = parse_table(&lab.ok("manager1", &["service", "ls"]));
    assert_eq!(
        row(&shoal_view, "NAME", "web")["REPLICAS"],
        "3/3",
        "shoal sees docker's service"
    );
    lab.wait_mesh(&[1, 2, 3], 8080, 12, 3);

    let ps = parse_table(&lab.docker_ok("manager1", &["service", "ps", "web"]));
    assert_eq!(ps.len(), 3, "{ps:?}");
    let hosts: BTreeSet<&str> = ps.iter().map(|t| t["NODE"].as_str()).collect();
    assert_eq!(hosts, BTreeSet::from(["manager1", "worker1", "worker2"]));
    assert!(
        ps.iter()
            .all(|t| t["DESIRED STATE"] == "Running" && t["CURRENT STATE"].starts_with("Running")),
        "{ps:?}"
    );
    let names: BTreeSet<&str> = ps.iter().map(|t| t["NAME"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["web.1", "web.2", "web.3"]));

    let pretty = lab.docker_ok("manager1", &["service", "inspect", "--pretty", "web"]);
    for want in [
        "Name:\t\tweb",
        "Replicated",
        "Replicas:\t3",
        "PublishedPort = 8080",
        "TargetPort = 80",
        "Image:\t\tshoal/demo-web",
    ] {
        assert!(
            pretty.contains(want),
            "inspect --pretty lacks {want:?}:\n{pretty}"
        );
    }

    lab.docker_ok("manager1", &["service", "scale", "web=5"]);
    let shoal_view = parse_table(&lab.ok("manager1", &["service", "ls"]));
    assert_eq!(row(&shoal_view, "NAME", "web")["REPLICAS"], "5/5");
    lab.wait_mesh(&[1, 2, 3], 8080, 20, 5);

    let before: BTreeSet<String> = lab.running("web").into_iter().map(|(id, _)| id).collect();
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "update",
            "--image",
            "shoal/demo-web:latest",
            "--env-add",
            "ROUND=2",
            "web",
        ],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["service", "inspect", "web"])).unwrap();
    let spec = &doc[0]["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(spec["Image"], "shoal/demo-web:latest");
    assert_eq!(spec["Env"], serde_json::json!(["ROUND=2"]));
    assert_eq!(
        doc[0]["Spec"]["EndpointSpec"]["Ports"][0]["PublishedPort"], 8080,
        "the update kept the rest of the spec"
    );
    let after: BTreeSet<String> = lab
        .wait_running("web", 5)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        before.is_disjoint(&after),
        "every task was replaced by the update"
    );

    lab.docker_ok(
        "manager1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "talker",
            "--replicas",
            "2",
            "shoal/demo-web",
            "sh",
            "-c",
            "echo talking on $(hostname); exec sleep 600",
        ],
    );
    let talkers = lab.wait_running("talker", 2);
    let logs = wait_for(Duration::from_secs(15), "talker's logs", || {
        let out = lab.docker("manager1", &["service", "logs", "talker"]);
        let all = text(&out);
        (out.status.success() && all.matches("talking on").count() == 2).then_some(all)
    })
    .0;
    for (task, node) in &talkers {
        let prefix = logs
            .lines()
            .find(|l| l.contains(&task[..12]) || l.contains(task.as_str()))
            .unwrap_or_else(|| panic!("no line from task {task}:\n{logs}"));
        assert!(prefix.starts_with("talker."), "{prefix}");
        assert!(prefix.contains(&format!("@{node}")), "{prefix}");
    }

    lab.docker_ok("manager1", &["service", "rm", "web", "talker"]);
    wait_for(Duration::from_secs(10), "the services to go", || {
        lab.ok("manager1", &["service", "ls"])
            .lines()
            .count()
            .eq(&1)
            .then_some(())
    });
    wait_for(Duration::from_secs(10), "port 8080 to close", || {
        (1..=3)
            .all(|i| lab.http_get(i, 8080).is_none())
            .then_some(())
    });
    lab.docker_ok("manager1", &["network", "rm", "webnet"]);
    assert!(!lab.ok("manager1", &["network", "ls"]).contains("webnet"));
}

#[test]
fn bad_requests_get_dockerds_errors_and_change_nothing() {
    let lab = Lab::up("eng-bad", 82, 2, 1, "1s");
    let (code, body) = lab.engine_api("manager1", "GET", "/_ping", None);
    assert_eq!((code, body.as_str()), (200, Some("OK")));
    let (code, body) = lab.engine_api("manager1", "GET", "/v1.41/version", None);
    assert_eq!(code, 200);
    assert_eq!(body["ApiVersion"], "1.50");

    let cases = [
        (
            "POST",
            "/v1.41/services/create",
            Some(r#"{"Name": "web", "TaskTemplate": "#),
            "malformed JSON",
        ),
        (
            "POST",
            "/v1.41/services/create",
            Some(
                r#"{"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web", "Env": "A=1"}}}"#,
            ),
            "TaskTemplate.ContainerSpec.Env",
        ),
        (
            "POST",
            "/v1.41/services/create",
            Some(
                r#"{"Name": "web", "Mode": {"Global": {}, "GlobalJob": {}}, "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web"}}}"#,
            ),
            "Mode: give one of Replicated, Global, ReplicatedJob or GlobalJob",
        ),
        (
            "POST",
            "/v1.41/services/create",
            Some(
                r#"{"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web", "Mounts": [{"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"CreateMountpoint": true}}]}}}"#,
            ),
            "BindOptions.CreateMountpoint is not supported",
        ),
        (
            "POST",
            "/v1.41/services/create",
            Some(
                r#"{"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web", "Mounts": [{"Type": "bind", "Source": "relative", "Target": "/x"}]}}}"#,
            ),
            "absolute path of a host directory",
        ),
        (
            "POST",
            "/v1.41/services/create",
            Some(
                r#"{"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web"}}, "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080, "Protocol": "sctp"}]}}"#,
            ),
            "sctp",
        ),
        (
            "POST",
            "/v1.41/networks/create",
            Some(r#"{"Name": "n1", "Driver": "overlay", "internal": true}"#),
            "Internal is not supported",
        ),
        (
            "GET",
            "/v1.41/services?filters=%7B%22colour%22%3A%7B%22red%22%3Atrue%7D%7D",
            None,
            "invalid filter 'colour'",
        ),
        (
            "GET",
            "/v1.99/services",
            None,
            "Maximum supported API version is 1.50",
        ),
    ];
    for (method, path, body, why) in cases {
        let (code, answer) = lab.engine_api("manager1", method, path, body);
        assert_eq!(code, 400, "{method} {path} {body:?}: {answer}");
        let message = answer["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {answer}"));
        assert!(
            message.contains(why),
            "{method} {path}: {message:?} lacks {why:?}"
        );
    }
    let (code, answer) = lab.engine_api("manager1", "GET", "/v1.41/services/nope", None);
    assert_eq!(code, 404, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("nope"),
        "{answer}"
    );
    let (code, answer) = lab.engine_api("worker1", "GET", "/v1.41/services", None);
    assert_eq!(code, 503, "a worker refuses as dockerd does: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not a swarm manager")
    );

    assert_eq!(
        lab.ok("manager1", &["service", "ls"]).lines().count(),
        1,
        "no service was written"
    );
    assert!(
        !lab.ok("manager1", &["network", "ls"]).contains("n1"),
        "no network was written"
    );
}

/// `docker --tlsverify` against a node's Engine API on TCP with `node`'s certificate.
fn docker_tls(lab: &Lab, cert_of: &str, args: &[&str]) -> std::process::Output {
    let certs = lab.certs(cert_of);
    let file = |f: &str| certs.join(f).display().to_string();
    Command::new("docker")
        .args([
            "--tlsverify",
            "--tlscacert",
            &file("ca.crt"),
            "--tlscert",
            &file("node.crt"),
            "--tlskey",
            &file("node.key"),
            "-H",
            &format!("tcp://{}:2376", lab.ip(1)),
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_engine_api_over_tcp_needs_a_manager_certificate() {
    let lab = Lab::up("eng-tcp", 83, 2, 1, "1s");
    // The server certificate names the address dialled: --tlsverify passes.
    let out = docker_tls(&lab, "manager1", &["node", "ls"]);
    assert!(out.status.success(), "{}", text(&out));
    let nodes = parse_table(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    let out = docker_tls(&lab, "worker1", &["node", "ls"]);
    assert!(!out.status.success(), "a worker certificate was accepted");
    assert!(text(&out).contains("managers only"), "{}", text(&out));

    // No client certificate at all: the handshake fails.
    let out = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &lab.certs("manager1").join("ca.crt").display().to_string(),
            &format!("https://{}:2376/_ping", lab.ip(1)),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a client without a certificate got in: {}",
        text(&out)
    );
    // Nor does a worker serve it: the TCP API lives on managers.
    let worker = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            &format!("https://{}:2376/_ping", lab.ip(2)),
        ])
        .output()
        .unwrap();
    assert!(!worker.status.success());
}

#[test]
fn swarm_membership_and_tokens_through_the_docker_cli() {
    let lab = Lab::up("eng-swarm", 84, 2, 1, "1s");
    let token = lab.docker_ok("manager1", &["swarm", "join-token", "-q", "worker"]);
    assert_eq!(
        token,
        lab.ok("manager1", &["swarm", "join-token", "-q", "worker"])
    );
    lab.docker_ok("manager1", &["swarm", "join-token", "--rotate", "worker"]);
    let rotated = lab.docker_ok("manager1", &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(rotated, token, "the worker token was rotated");
    // The task history and Raft's snapshot settings are honoured; an external CA is
    // refused by name.
    lab.docker_ok(
        "manager1",
        &[
            "swarm",
            "update",
            "--task-history-limit",
            "9",
            "--snapshot-interval",
            "5000",
            "--max-snapshots",
            "1",
        ],
    );
    let info = lab.docker_ok("manager1", &["info"]);
    assert!(info.contains("Task History Retention Limit: 9"), "{info}");
    assert!(info.contains("Snapshot Interval: 5000"), "{info}");
    assert!(
        info.contains("Number of Old Snapshots to Retain: 1"),
        "{info}"
    );
    let refused = lab.docker(
        "manager1",
        &[
            "swarm",
            "update",
            "--external-ca",
            "protocol=cfssl,url=https://ca.invalid",
        ],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("ExternalCAs"), "{}", text(&refused));

    lab.docker_ok(
        "manager1",
        &[
            "node",
            "update",
            "--label-add",
            "zone=a",
            "--availability",
            "drain",
            "worker1",
        ],
    );
    let worker_spec = || -> serde_json::Value {
        let out = lab.ok("manager1", &["node", "inspect", "worker1"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["Spec"].clone()
    };
    let spec = worker_spec();
    assert_eq!(spec["Labels"]["zone"], "a");
    assert_eq!(spec["Availability"], "drain");
    lab.docker_ok(
        "manager1",
        &["node", "update", "--label-rm", "zone", "worker1"],
    );
    let spec = worker_spec();
    assert!(spec["Labels"].get("zone").is_none(), "{spec}");
    assert_eq!(spec["Availability"], "drain", "the rest of the spec stays");

    let worker_info = || lab.docker_ok("worker1", &["info"]);
    lab.docker_ok("worker1", &["swarm", "leave"]);
    assert!(worker_info().contains("Swarm: inactive"));
    // A setting shoal does not change is refused by name, not dropped.
    let refused = lab.docker(
        "worker1",
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &lab.ip(2),
            "--external-ca",
            "protocol=cfssl,url=https://ca.invalid",
        ],
    );
    assert!(
        !refused.status.success() && text(&refused).contains("CAConfig.ExternalCAs"),
        "{}",
        text(&refused)
    );
    assert!(
        worker_info().contains("Swarm: inactive"),
        "nothing was set up"
    );
    // A swarm of its own, then back out of it.
    lab.docker_ok(
        "worker1",
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &lab.ip(2),
            "--default-addr-pool",
            "10.20.0.0/16",
            "--cert-expiry",
            "48h",
        ],
    );
    let info = worker_info();
    assert!(
        info.contains("Is Manager: true") && info.contains("Nodes: 1"),
        "{info}"
    );
    assert!(info.contains("Expiry Duration: 2 days"), "{info}");
    assert!(
        info.contains("Default Address Pool: 10.20.0.0/16"),
        "{info}"
    );
    lab.docker_ok("worker1", &["swarm", "leave", "--force"]);
    assert!(worker_info().contains("Swarm: inactive"));
    // A single-node swarm on loopback, as dockerd allows; its published port answers on
    // localhost. Joining others at a loopback address is refused.
    lab.docker_ok(
        "worker1",
        &["swarm", "init", "--advertise-addr", "127.0.0.1"],
    );
    lab.docker_ok(
        "worker1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "lone",
            "-p",
            "8081:80",
            "shoal/demo-web",
        ],
    );
    let worker_ns = lab.netns("worker1");
    wait_for(
        Duration::from_secs(20),
        "the lone swarm's port on localhost",
        || {
            let out = Command::new("ip")
                .args(["netns", "exec", &worker_ns, "curl", "-s", "--max-time", "2"])
                .arg("http://127.0.0.1:8081/")
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .starts_with("Hello from ")
                .then_some(())
        },
    );
    lab.docker_ok("worker1", &["swarm", "leave", "--force"]);
    let refused = lab.docker(
        "worker1",
        &[
            "swarm",
            "join",
            "--advertise-addr",
            "127.0.0.1",
            "--token",
            rotated.trim(),
            &format!("{}:2377", lab.ip(1)),
        ],
    );
    assert!(
        !refused.status.success() && text(&refused).contains("cannot advertise 127.0.0.1"),
        "{}",
        text(&refused)
    );
    assert!(worker_info().contains("Swarm: inactive"));
    lab.docker_ok(
        "worker1",
        &[
            "swarm",
            "join",
            "--token",
            rotated.trim(),
            &format!("{}:2377", lab.ip(1)),
        ],
    );
    assert!(worker_info().contains("Swarm: active"));
    wait_for(
        Duration::from_secs(15),
        "the rejoined worker1 to be Ready",
        || {
            let nodes = parse_table(&lab.docker_ok("manager1", &["node", "ls"]));
            nodes
                .iter()
                .any(|n| n["HOSTNAME"] == "worker1" && n["STATUS"] == "Ready")
                .then_some(())
        },
    );
}

/// A client that is not the docker CLI (an SDK, a script with curl) sends what Go's
/// encoding/json accepts and reads what dockerd writes, and gets dockerd's status codes.
#[test]
fn other_clients_are_decoded_and_answered_as_dockerd_does() {
    let lab = Lab::up("eng-sdk", 87, 2, 1, "1s");
    // Docker's Python SDK, as a script for a Swarm node would use it (tests/sdk/).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/docker_py.py");
    let out = common::shoal(&[
        "lab", "exec", "--name", &lab.name, "manager1", "--", "python3", script, "2",
    ]);
    assert!(
        out.status.success() && text(&out).contains("docker-py: ok"),
        "{}",
        text(&out)
    );
    // Field names in any case; a field the API lacks is ignored, as dockerd ignores it.
    let body = r#"{"name": "sdk", "labels": {"Tier": "front"},
        "taskTemplate": {"containerSpec": {"image": "shoal/demo-web",
            "healthcheck": {"test": ["CMD", "true"], "interval": 1000000000}}},
        "mode": {"replicated": {"replicas": 1}},
        "updateConfig": {"parallelism": 2, "maxFailureRatio": 0.4},
        "Colour": "red"}"#;
    let (code, created) = lab.engine_api("manager1", "POST", "/v1.41/services/create", Some(body));
    assert_eq!(code, 201, "{created}");
    let (code, svc) = lab.engine_api("manager1", "GET", "/v1.41/services/sdk", None);
    assert_eq!(code, 200, "{svc}");
    let spec = &svc["Spec"];
    assert_eq!(
        spec["Labels"]["Tier"], "front",
        "label keys keep their case"
    );
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(
        container["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "true"])
    );
    assert!(container.get("HealthCheck").is_none(), "{container}");
    // What dockerd leaves out when empty is not there; a float32 reads back exactly.
    assert!(spec["TaskTemplate"].get("Placement").is_none(), "{spec}");
    assert!(container.get("Args").is_none(), "{container}");
    assert_eq!(spec["UpdateConfig"]["Parallelism"], 2);
    assert_eq!(spec["UpdateConfig"]["MaxFailureRatio"].as_f64(), Some(0.4));
    assert!(container.get("StopGracePeriod").is_none(), "{container}");
    let (_, defaults) = lab.engine_api(
        "manager1",
        "GET",
        "/v1.41/services/sdk?insertDefaults=true",
        None,
    );
    assert_eq!(defaults["Spec"]["RollbackConfig"]["FailureAction"], "pause");
    assert_eq!(
        defaults["Spec"]["UpdateConfig"]["Parallelism"], 2,
        "set stays set"
    );

    // Status codes clients depend on.
    let (code, answer) = lab.engine_api("manager1", "POST", "/v1.41/services/create", Some(body));
    assert_eq!(code, 409, "a taken name: {answer}");
    let net = r#"{"name": "sdknet", "driver": "overlay"}"#;
    let (code, answer) = lab.engine_api("manager1", "POST", "/v1.41/networks/create", Some(net));
    assert_eq!(code, 201, "{answer}");
    let (code, answer) = lab.engine_api("manager1", "POST", "/v1.41/networks/create", Some(net));
    assert_eq!(code, 409, "a taken network name: {answer}");
    let (code, answer) = lab.engine_api("manager1", "GET", "/v1.41/networks/nope", None);
    assert_eq!(code, 404, "{answer}");
    for (path, body) in [
        ("/v1.41/swarm/init", r#"{"ListenAddr": "0.0.0.0:2377"}"#),
        ("/v1.41/swarm/leave", "{}"),
    ] {
        let (code, answer) = lab.engine_api("manager1", "POST", path, Some(body));
        assert_eq!(code, 503, "{path}: {answer}");
    }
    let (code, answer) =
        lab.engine_api("worker1", "POST", "/v1.41/swarm/leave?force=1", Some("{}"));
    assert_eq!(code, 200, "{answer}");
    let (code, answer) =
        lab.engine_api("worker1", "POST", "/v1.41/swarm/leave?force=1", Some("{}"));
    assert_eq!(code, 503, "leaving twice: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not part of a swarm")
    );
}

/// Removes a container and a network of the host's dockerd when dropped, even if the
/// test failed.
struct RemoveLocal {
    container: &'static str,
    network: &'static str,
}

impl Drop for RemoveLocal {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", self.container])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", self.network])
            .output();
    }
}

/// What is not swarm mode goes through shoal's socket to the node's own dockerd, as on
/// a Swarm node: docker run (attach), exec (a hijacked connection), logs, ps, images,
/// local networks; and /events merges the swarm's events with dockerd's.
#[test]
fn containers_images_exec_and_events_reach_the_nodes_dockerd_through_the_same_socket() {
    let lab = Lab::up("eng-pass", 88, 1, 1, "1s");
    let (name, local_net) = ("shoal-test-eng-pass", "shoal-test-eng-pass-net");
    let _cleanup = RemoveLocal {
        container: name,
        network: local_net,
    };
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let since = format!("{:.3}", unix_now() - 1.0);
    lab.docker_ok(
        "manager1",
        &["service", "create", "-d", "--name", "evt", "shoal/demo-web"],
    );
    let said = lab.docker_ok(
        "manager1",
        &[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/echo",
            "shoal/demo-web",
            "through",
            "shoal",
        ],
    );
    assert_eq!(said.trim(), "through shoal");
    lab.docker_ok(
        "manager1",
        &[
            "run",
            "-d",
            "--name",
            name,
            "--entrypoint",
            "/bin/sh",
            "shoal/demo-web",
            "-c",
            "echo started; sleep 300",
        ],
    );
    let listed = lab.docker_ok(
        "manager1",
        &[
            "ps",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(listed.trim(), name);
    let inside = lab.docker_ok(
        "manager1",
        &["exec", name, "sh", "-c", "echo inside $((6*7))"],
    );
    assert_eq!(inside.trim(), "inside 42");
    let (logs, _) = wait_for(Duration::from_secs(10), "the container's log", || {
        let logs = lab.docker_ok("manager1", &["logs", name]);
        logs.contains("started").then_some(logs)
    });
    assert_eq!(logs.trim(), "started");
    let images = lab.docker_ok("manager1", &["images", "--format", "{{.Repository}}"]);
    assert!(images.lines().any(|r| r == "shoal/demo-web"), "{images}");
    // /info is shoal's (the swarm part) with the engine's counts.
    let counted = lab.docker_ok(
        "manager1",
        &["info", "--format", "{{.Images}} {{.Swarm.LocalNodeState}}"],
    );
    let (count, swarm) = counted.trim().split_once(' ').unwrap();
    assert!(
        count.parse::<u32>().unwrap() >= 1 && swarm == "active",
        "{counted}"
    );
    let (code, containers) = lab.engine_api("manager1", "GET", "/v1.41/containers/json", None);
    assert_eq!(code, 200, "{containers}");
    assert!(
        containers
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Names"][0] == format!("/{name}")),
        "{containers}"
    );
    // A bridge network is the node's own; one list shows it beside the swarm's.
    lab.docker_ok(
        "manager1",
        &["network", "create", "-d", "bridge", local_net],
    );
    let nets = parse_table(&lab.docker_ok("manager1", &["network", "ls"]));
    assert_eq!(row(&nets, "NAME", local_net)["SCOPE"], "local");
    assert_eq!(row(&nets, "NAME", "ingress")["SCOPE"], "swarm");
    let inspected = lab.docker_ok("manager1", &["network", "inspect", local_net]);
    assert!(inspected.contains("\"Driver\": \"bridge\""), "{inspected}");
    lab.docker_ok("manager1", &["network", "connect", local_net, name]);
    let attached = lab.docker_ok(
        "manager1",
        &[
            "inspect",
            name,
            "--format",
            "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
        ],
    );
    assert!(
        attached.split_whitespace().any(|n| n == local_net),
        "{attached}"
    );
    lab.docker_ok("manager1", &["network", "disconnect", local_net, name]);
    assert!(
        !lab.ok("manager1", &["network", "ls"]).contains(local_net),
        "the swarm has no such network"
    );
    lab.docker_ok("manager1", &["network", "rm", local_net]);
    lab.docker_ok("manager1", &["rm", "-f", name]);
    // One event stream: the swarm's (the service created) and dockerd's (the containers).
    let until = format!("{:.3}", unix_now() + 1.0);
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let events = lab.docker_ok(
        "manager1",
        &[
            "events", "--since", &since, "--until", &until, "--format", format,
        ],
    );
    assert!(
        events.lines().any(|l| l == "service create evt"),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l == format!("container destroy {name}")),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l == format!("network create {local_net}")),
        "{events}"
    );
    let swarm_only = lab.docker_ok(
        "manager1",
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "scope=swarm",
            "--format",
            format,
        ],
    );
    assert!(
        swarm_only.lines().any(|l| l == "service create evt"),
        "{swarm_only}"
    );
    assert!(!swarm_only.contains("container"), "{swarm_only}");
    let gone = lab.docker_ok(
        "manager1",
        &["ps", "-a", "--filter", &format!("name={name}"), "-q"],
    );
    assert!(gone.trim().is_empty(), "{gone}");
}

//! Secrets and configs on lab clusters: a task reads its files, the secret's value is
//! on no disk (only in tmpfs mounts), inspect never shows it, and a secret or config in
//! use cannot be removed; with shoal's CLI (process runtime) and the docker CLI through
//! the Engine API (docker runtime, docker stack deploy). Autolock: a restarted manager
//! serves nothing until it is given the swarm's current unlock key. And the root CA:
//! rotated with either CLI while requests flow through the mesh.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Output;
use std::time::Duration;

use common::load::Load;
use common::{Lab, shoal, text, wait_for, words};

/// A value no file holds by chance.
fn unique_value(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// A file outside every lab directory (removed when dropped), to create from.
struct Source(PathBuf);

impl Source {
    fn new(name: &str, data: &[u8]) -> Source {
        let path = std::env::temp_dir().join(format!("shoal-test-{}-{name}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        Source(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The tmpfs mount points on this machine.
fn tmpfs_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = PathBuf::from(left.split_whitespace().nth(4)?);
            (right.split_whitespace().next()? == "tmpfs").then_some(point)
        })
        .collect()
}

/// Files under `dir` holding `needle`, on disk: tmpfs mounts are not descended into
/// when `skip_tmpfs`.
fn files_holding(dir: &Path, needle: &[u8], skip_tmpfs: bool) -> Vec<PathBuf> {
    let skip = if skip_tmpfs { tmpfs_mounts() } else { vec![] };
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if !skip.contains(&path) {
                    todo.push(path);
                }
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// Tmpfs mounts under `dir`.
fn tmpfs_under(dir: &Path) -> Vec<PathBuf> {
    tmpfs_mounts()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn logs(lab: &Lab, service: &str) -> String {
    lab.ok("manager1", &["service", "logs", service])
}

#[test]
fn secrets_and_configs_reach_their_tasks_and_never_a_disk() {
    let lab = Lab::up("sec-proc", 101, 3, 1, "1s");
    let value = unique_value("Seven of Nine");
    let secret = Source::new("secret", value.as_bytes());
    let config = Source::new("config", b"listen = 8080\n");
    let id = lab.ok(
        "manager1",
        &[
            "secret",
            "create",
            "--label",
            "team=drones",
            "missing_drones",
            secret.path(),
        ],
    );
    assert_eq!(id.trim().len(), 25, "an ID: {id}");
    lab.ok("manager1", &["config", "create", "app.conf", config.path()]);

    // Bad input is refused, saying what is wrong; nothing is made.
    let big = Source::new("big", &vec![b'x'; 500 * 1024]);
    lab.refused(
        "manager1",
        &["secret", "create", "big", big.path()],
        "less than 500 KiB",
    );
    lab.refused(
        "manager1",
        &["secret", "create", "missing_drones", secret.path()],
        "secret missing_drones already exists",
    );
    lab.refused(
        "manager1",
        &["secret", "create", "bad!name", secret.path()],
        "invalid secret name",
    );
    let listed = lab.ok("manager1", &["secret", "ls"]);
    assert!(!listed.contains("big"), "{listed}");
    lab.refused(
        "manager1",
        &[
            "service", "create", "--name", "x", "--secret", "nope", "busybox", "true",
        ],
        "secret nope not found",
    );

    // Two tasks on the managers' choice of nodes (never worker2) read their files.
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "reader",
            "--replicas",
            "2",
            "--constraint",
            "node.hostname!=worker2",
            "--secret",
            "missing_drones",
            "--secret",
            "source=missing_drones,target=deep/copy,mode=0400,uid=7",
            "--config",
            "source=app.conf,target=/run/configs/app.conf",
            "busybox",
            "sh",
            "-c",
            // The digest, not the value: the task's log is on disk.
            "sha256sum < /run/secrets/missing_drones; stat -c 'copy %u %a' /run/secrets/deep/copy; cat /run/configs/app.conf; sleep 1000",
        ],
    );
    lab.wait_running("reader", 2);
    let digest = sha256(value.as_bytes());
    let out = wait_for(
        Duration::from_secs(15),
        "both tasks to print their files",
        || {
            let l = logs(&lab, "reader");
            (l.matches(&digest).count() == 2
                && l.matches("copy 7 400").count() == 2
                && l.matches("listen = 8080").count() == 2)
                .then_some(l)
        },
    )
    .0;
    assert!(out.contains("reader.1"), "{out}");

    // Inspect never shows the data; the service shows where its files go.
    let inspect = lab.ok("manager1", &["secret", "inspect", "missing_drones"]);
    assert!(!inspect.contains(&value), "{inspect}");
    let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(doc[0]["Spec"]["Labels"]["team"], "drones");
    let pretty = lab.ok("manager1", &["service", "inspect", "--pretty", "reader"]);
    assert!(
        pretty.contains("Secrets:\n Target:\tmissing_drones\n  Source:\tmissing_drones"),
        "{pretty}"
    );
    let config_doc = lab.ok("manager1", &["config", "inspect", "--pretty", "app.conf"]);
    assert!(config_doc.contains("Data:\nlisten = 8080"), "{config_doc}");

    // On no disk: not in Raft (sealed), logs, run directories; not on the host's /run
    // either (each task's tmpfs is in its own mount namespace).
    let on_disk = files_holding(&lab.dir(), value.as_bytes(), false);
    assert!(on_disk.is_empty(), "the secret is on disk: {on_disk:?}");
    let on_host = files_holding(Path::new("/run/secrets"), value.as_bytes(), false);
    assert!(on_host.is_empty(), "the secret is on the host: {on_host:?}");

    // In use: neither can be removed, and the refusal names the service.
    lab.refused(
        "manager1",
        &["secret", "rm", "missing_drones"],
        "secret 'missing_drones' is in use by the following service: reader",
    );
    lab.refused(
        "manager1",
        &["config", "rm", "app.conf"],
        "config 'app.conf' is in use by the following service: reader",
    );
    // Only labels change.
    lab.ok(
        "manager1",
        &[
            "secret",
            "update",
            "--label-add",
            "tier=1",
            "missing_drones",
        ],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&lab.ok("manager1", &["secret", "inspect", "missing_drones"]))
            .unwrap();
    assert_eq!(doc[0]["Spec"]["Labels"]["tier"], "1");

    // Taken off the service, the secret can go; then the config with the service.
    lab.ok(
        "manager1",
        &[
            "service",
            "update",
            "--secret-rm",
            "missing_drones",
            "reader",
        ],
    );
    lab.wait_update_completed("reader", Duration::from_mins(1));
    lab.ok("manager1", &["secret", "rm", "missing_drones"]);
    lab.ok("manager1", &["service", "rm", "reader"]);
    lab.ok("manager1", &["config", "rm", "app.conf"]);
    assert!(
        !lab.ok("manager1", &["config", "ls"]).contains("app.conf"),
        "removed"
    );
}

/// The containers of `service` on this machine's dockerd (every lab node shares it).
fn containers(service: &str) -> Vec<String> {
    common::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

#[test]
fn docker_cli_secrets_and_configs_through_the_engine_api() {
    let lab = Lab::up_with("sec-dock", 102, 2, 1, "1s", "docker");
    let value = unique_value("hush");
    let out = sh(
        &lab,
        "manager1",
        &format!("printf %s '{value}' | docker secret create db_pw -"),
    );
    assert!(out.status.success(), "docker secret create: {}", text(&out));
    let config = Source::new("app", b"x = 1\n");
    lab.docker_ok("manager1", &["config", "create", "app.conf", config.path()]);
    lab.docker_ok(
        "manager1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "2",
            "--secret",
            "db_pw",
            "--secret",
            "source=db_pw,target=/run/secrets/other,uid=33,mode=0440",
            "--config",
            "source=app.conf,target=/etc/app.conf",
            "shoal/demo-web",
        ],
    );
    lab.wait_running("web", 2);
    let ids = wait_for(Duration::from_secs(10), "the two containers", || {
        let c = containers("web");
        (c.len() == 2).then_some(c)
    })
    .0;
    for c in &ids {
        let read = common::docker(&[
            "exec",
            c,
            "sh",
            "-c",
            "cat /run/secrets/db_pw; echo; stat -c '%u %a' /run/secrets/other; cat /etc/app.conf",
        ]);
        assert_eq!(read, format!("{value}\n33 440\nx = 1\n"), "container {c}");
    }
    let inspect = lab.docker_ok("manager1", &["secret", "inspect", "db_pw"]);
    assert!(!inspect.contains(&value), "{inspect}");
    let config_doc = lab.docker_ok(
        "manager1",
        &[
            "config",
            "inspect",
            "--format",
            "{{json .Spec.Data}}",
            "app.conf",
        ],
    );
    assert_eq!(config_doc.trim(), "\"eCA9IDEK\"", "base64 of the data");

    // Only in the tasks' tmpfs mounts: on no disk under the lab's directories.
    assert_eq!(tmpfs_under(&lab.dir()).len(), 2, "a tmpfs per task");
    let on_disk = files_holding(&lab.dir(), value.as_bytes(), true);
    assert!(on_disk.is_empty(), "the secret is on disk: {on_disk:?}");

    let out = lab.docker("manager1", &["secret", "rm", "db_pw"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is in use by the following service: web"),
        "{}",
        text(&out)
    );

    // docker stack deploy makes the stack's secret from a file and removes it with the
    // stack.
    let stack_secret = Source::new("stack", value.as_bytes());
    let compose = lab.dir().join("stack.yml");
    std::fs::write(
        &compose,
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: shoal/demo-web\n    secrets:\n      - token\nsecrets:\n  token:\n    file: {}\n",
            stack_secret.path()
        ),
    )
    .unwrap();
    lab.docker_ok(
        "manager1",
        &["stack", "deploy", "-c", compose.to_str().unwrap(), "st"],
    );
    lab.wait_running("st_app", 1);
    let app = wait_for(Duration::from_secs(10), "the stack's container", || {
        containers("st_app").pop()
    })
    .0;
    let token = common::docker(&["exec", &app, "cat", "/run/secrets/token"]);
    assert_eq!(token, value);
    let listed = lab.docker_ok("manager1", &["secret", "ls", "--format", "{{.Name}}"]);
    assert!(listed.contains("st_token"), "{listed}");

    // Gone with their services: the tmpfs mounts too, and the secrets can be removed.
    lab.docker_ok("manager1", &["stack", "rm", "st"]);
    lab.docker_ok("manager1", &["service", "rm", "web"]);
    wait_for(
        Duration::from_secs(30),
        "the tasks' tmpfs mounts to go",
        || tmpfs_under(&lab.dir()).is_empty().then_some(()),
    );
    let anywhere = files_holding(&lab.dir(), value.as_bytes(), false);
    assert!(anywhere.is_empty(), "left behind: {anywhere:?}");
    wait_for(Duration::from_secs(10), "the stack's secret to go", || {
        let listed = lab.docker_ok("manager1", &["secret", "ls", "--format", "{{.Name}}"]);
        (!listed.contains("st_token")).then_some(())
    });
    lab.docker_ok("manager1", &["secret", "rm", "db_pw"]);
    lab.docker_ok("manager1", &["config", "rm", "app.conf"]);
}

/// `sh -c SCRIPT` in `node` (shoal and docker point at its daemon there); `shoal` in
/// the script is the binary under test.
fn sh(lab: &Lab, node: &str, script: &str) -> Output {
    let script = script.replace("| shoal ", &format!("| {} ", common::shoal_bin().display()));
    shoal(&[
        "lab", "exec", "--name", &lab.name, node, "--", "sh", "-c", &script,
    ])
}

fn raft_key_file(lab: &Lab) -> String {
    std::fs::read_to_string(
        lab.node("manager1")
            .data_dir()
            .join("swarm/raft/raft-key.json"),
    )
    .unwrap()
}

fn restart_manager(lab: &Lab) {
    lab.stop("manager1", false);
    lab.start("manager1");
}

const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used";

#[test]
fn autolock_keeps_a_restarted_manager_locked_until_the_right_key_comes() {
    let lab = Lab::up("sec-lock", 103, 2, 1, "1s");
    let value = unique_value("locked away");
    let secret = Source::new("locked", value.as_bytes());
    lab.ok("manager1", &["secret", "create", "vault", secret.path()]);

    let out = lab.ok("manager1", &["swarm", "update", "--autolock=true"]);
    assert!(out.contains("SWMKEY-1-"), "{out}");
    let key = lab
        .ok("manager1", &["swarm", "unlock-key", "-q"])
        .trim()
        .to_string();
    assert!(out.contains(&key), "the key shown is the one kept: {out}");
    // The manager's keys are sealed: the data key and the TLS key are not on its disk
    // as they are, and neither is the secret.
    wait_for(Duration::from_secs(10), "the data key to be sealed", || {
        raft_key_file(&lab)
            .contains("sealed_data_key")
            .then_some(())
    });
    // The node seals its TLS key once it hears of the lock, a moment after the manager.
    let certs = lab.certs("manager1");
    wait_for(Duration::from_secs(10), "the TLS key to be sealed", || {
        (!certs.join("node.key").exists() && certs.join("node.key.sealed").exists()).then_some(())
    });
    let on_disk = files_holding(&lab.dir(), value.as_bytes(), false);
    assert!(on_disk.is_empty(), "{on_disk:?}");

    restart_manager(&lab);
    lab.refused("manager1", &["node", "ls"], LOCKED);
    assert!(lab.ok("manager1", &["info"]).contains("Swarm: locked"));
    let (code, answer) = lab.engine_api("manager1", "GET", "/swarm", None);
    assert_eq!(code, 503, "{answer}");
    // A wrong key is refused and changes nothing; the right one unlocks.
    let wrong = format!("SWMKEY-1-{}", "A".repeat(43));
    let out = sh(
        &lab,
        "manager1",
        &format!("echo {wrong} | shoal swarm unlock"),
    );
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    lab.refused("manager1", &["node", "ls"], LOCKED);
    let out = sh(
        &lab,
        "manager1",
        &format!("echo {key} | docker swarm unlock"),
    );
    assert!(out.status.success(), "{}", text(&out));
    lab.wait_ready("worker1", Duration::from_secs(30));
    assert!(lab.ok("manager1", &["secret", "ls"]).contains("vault"));

    // Rotation: the old key no longer opens the restarted manager, the new one does.
    let sealed_before = raft_key_file(&lab);
    let rotated = lab.docker_ok("manager1", &["swarm", "unlock-key", "--rotate", "-q"]);
    let rotated = rotated.trim().to_string();
    assert!(rotated.starts_with("SWMKEY-1-") && rotated != key);
    wait_for(
        Duration::from_secs(10),
        "the data key to be sealed anew",
        || (raft_key_file(&lab) != sealed_before).then_some(()),
    );
    restart_manager(&lab);
    let out = sh(
        &lab,
        "manager1",
        &format!("echo {key} | shoal swarm unlock"),
    );
    assert!(
        text(&out).contains("not the swarm's current unlock key"),
        "{}",
        text(&out)
    );
    let out = sh(
        &lab,
        "manager1",
        &format!("echo {rotated} | shoal swarm unlock"),
    );
    assert!(out.status.success(), "{}", text(&out));
    lab.wait_ready("manager1", Duration::from_secs(30));

    // Off again: a restart needs no key.
    lab.docker_ok("manager1", &["swarm", "update", "--autolock=false"]);
    wait_for(
        Duration::from_secs(10),
        "the data key to be kept plainly",
        || raft_key_file(&lab).contains("\"data_key\"").then_some(()),
    );
    assert!(certs.join("node.key").exists());
    restart_manager(&lab);
    lab.wait_ready("worker1", Duration::from_secs(30));
    assert!(lab.ok("manager1", &["secret", "ls"]).contains("vault"));
}

/// `service ps` rows of `service` as `node` sees them.
fn tasks_on(
    lab: &Lab,
    node: &str,
    service: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    common::parse_table(&lab.ok(node, &["service", "ps", "--no-trunc", service]))
}

#[test]
fn a_managers_backup_brings_the_swarm_back_on_a_wiped_lab_with_its_unlock_key() {
    let lab = Lab::up("sec-bkp", 104, 3, 3, "1s");
    let value = unique_value("kept in the backup");
    let secret = Source::new("backup", value.as_bytes());
    let config = Source::new("backup-config", b"restored = yes\n");
    lab.ok(
        "manager1",
        &["network", "create", "-d", "overlay", "backnet"],
    );
    lab.ok("manager1", &["secret", "create", "db", secret.path()]);
    lab.ok("manager1", &["config", "create", "app.conf", config.path()]);
    lab.ok(
        "manager1",
        &[
            "service",
            "create",
            "--name",
            "keep",
            "--replicas",
            "2",
            "--network",
            "backnet",
            "--secret",
            "db",
            "--config",
            "source=app.conf,target=/run/configs/app.conf",
            "busybox",
            "sh",
            "-c",
            "sha256sum < /run/secrets/db; cat /run/configs/app.conf; sleep 1000",
        ],
    );
    lab.wait_running("keep", 2);
    lab.ok("manager1", &["swarm", "update", "--autolock=true"]);
    let key = lab
        .ok("manager1", &["swarm", "unlock-key", "-q"])
        .trim()
        .to_string();

    // The backup: a manager that does not lead, stopped, its data directory copied.
    let leader = lab
        .nodes("manager1")
        .into_iter()
        .find(|n| n.manager_status == "Leader")
        .expect("a leader")
        .hostname;
    let node = if leader == "manager2" {
        "manager3"
    } else {
        "manager2"
    };
    let data = lab.node(node).data_dir();
    wait_for(
        Duration::from_secs(10),
        "the backed-up manager's key to be sealed",
        || {
            std::fs::read_to_string(data.join("swarm/raft/raft-key.json"))
                .ok()?
                .contains("sealed_data_key")
                .then_some(())
        },
    );
    lab.stop(node, false);
    let backup = lab.dir().join("backup");
    let copy = |from: &Path, to: &Path| {
        let out = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "cp: {}", text(&out));
    };
    copy(&data, &backup);
    // The swarm rotates its key after the backup: the backup opens with the old one only.
    let rotated = lab.ok("manager1", &["swarm", "unlock-key", "--rotate", "-q"]);

    // Every node lost; the copy restored on one of them.
    for n in ["manager1", "manager2", "manager3"] {
        let out = shoal(&["lab", "wipe", "--name", &lab.name, n]);
        assert!(out.status.success(), "wipe {n}: {}", text(&out));
    }
    copy(&backup, &data);
    lab.start(node);
    lab.refused(node, &["swarm", "init", "--force-new-cluster"], LOCKED);
    let out = sh(
        &lab,
        node,
        &format!("echo {} | shoal swarm unlock", rotated.trim()),
    );
    assert!(text(&out).contains("invalid key"), "{}", text(&out));
    let out = sh(&lab, node, &format!("echo {key} | shoal swarm unlock"));
    assert!(out.status.success(), "{}", text(&out));
    lab.ok(node, &["swarm", "init", "--force-new-cluster"]);

    // Networks, services, secrets and configs are back, and the service runs again.
    assert!(lab.ok(node, &["network", "ls"]).contains("backnet"));
    assert!(lab.ok(node, &["secret", "ls"]).contains("db"));
    assert!(lab.ok(node, &["config", "ls"]).contains("app.conf"));
    let digest = sha256(value.as_bytes());
    wait_for(
        Duration::from_mins(1),
        "keep to run again on the restored node",
        || {
            let running = tasks_on(&lab, node, "keep")
                .into_iter()
                .filter(|t| {
                    t["NODE"] == node
                        && t["DESIRED STATE"] == "Running"
                        && t["CURRENT STATE"].starts_with("Running")
                })
                .count();
            // The lost nodes' tasks have no logs to give: the rest come, then a warning.
            let logs = text(&lab.exec(node, &["service", "logs", "keep"]));
            (running == 2 && logs.matches(&digest).count() >= 2 && logs.contains("restored = yes"))
                .then_some(())
        },
    );
}

/// What openssl says of the certificate in `file`: its issuer and how many hours it has
/// left.
fn certificate_facts(file: &Path) -> (String, i64) {
    let out = Command::new("openssl")
        .args([
            "x509", "-noout", "-issuer", "-enddate", "-dateopt", "iso_8601", "-in",
        ])
        .arg(file)
        .output()
        .unwrap();
    let out = text(&out);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .trim()
            .to_string()
    };
    let end = field("notAfter=");
    let end = Command::new("date")
        .args(["-u", "-d", &end, "+%s"])
        .output()
        .unwrap();
    let end: i64 = text(&end).trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (field("issuer="), (end - now) / 3600)
}

/// Every node's TLS, as the Engine API reports it, trusts only `root`.
fn every_node_trusts_only(lab: &Lab, root: &str) -> bool {
    let (code, nodes) = lab.engine_api("manager1", "GET", "/nodes", None);
    code == 200
        && nodes.as_array().is_some_and(|ns| {
            ns.iter()
                .all(|n| n["Description"]["TLSInfo"]["TrustRoot"].as_str() == Some(root))
        })
}

/// An operator's own root CA, made with openssl: (certificate, key) files.
fn operators_ca(lab: &Lab) -> (PathBuf, PathBuf) {
    let (cert, key) = (lab.dir().join("my-ca.crt"), lab.dir().join("my-ca.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/O=Example Corp/CN=Example Swarm Root",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (cert, key)
}

#[test]
fn the_root_ca_rotates_under_load_without_a_failed_request() {
    let lab = Lab::up("sec-ca", 106, 4, 3, "1s");
    let create = words("service create --name web --replicas 3 -p 8080:80 shoal/demo-web");
    lab.ok("manager1", &create);
    lab.wait_mesh(&[1, 2, 3, 4], 8080, 30, 3);
    let old_ca = lab.ok("manager1", &["swarm", "ca"]);
    assert!(
        old_ca.starts_with("-----BEGIN CERTIFICATE-----"),
        "{old_ca}"
    );
    assert_eq!(
        lab.docker_ok("manager1", &["swarm", "ca"]).trim(),
        old_ca.trim()
    );
    let old_token = lab.ok("manager1", &["swarm", "join-token", "-q", "worker"]);

    // Settings first: certificates shorter than Swarm allows are refused by name; 48h is
    // what certificates issued from now on get.
    lab.refused(
        "manager1",
        &["swarm", "ca", "--cert-expiry", "30m"],
        "at least 1h",
    );
    lab.refused(
        "manager1",
        &["swarm", "ca", "--ca-cert", "/dev/null"],
        "need --rotate",
    );
    lab.ok("manager1", &["swarm", "ca", "--cert-expiry", "48h"]);

    // shoal's CLI rotates to a new root and waits until every node trusts only it, while
    // requests go through every node's published port.
    let addrs: Vec<String> = (1..=4).map(|i| format!("{}:8080", lab.ip(i))).collect();
    let load = Load::start(&addrs);
    let new_ca = lab.ok("manager1", &["swarm", "ca", "--rotate"]);
    assert!(
        new_ca.starts_with("-----BEGIN CERTIFICATE-----") && new_ca != old_ca,
        "{new_ca}"
    );
    assert!(every_node_trusts_only(&lab, &new_ca));
    for node in ["manager1", "manager2", "manager3", "worker1"] {
        let certs = lab.certs(node);
        assert_eq!(
            std::fs::read_to_string(certs.join("ca.crt")).unwrap(),
            new_ca,
            "{node}"
        );
        let (_, hours) = certificate_facts(&certs.join("node.crt"));
        assert!((46..=48).contains(&hours), "{node}: {hours}h left, not 48h");
    }
    // The join tokens changed with the root; the control plane works on the new root.
    let token = lab.ok("manager1", &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(token, old_token);
    lab.ok("manager1", &["service", "scale", "web=4"]);
    lab.wait_running("web", 4);

    // The docker CLI rotates to an operator's root through the Engine API and waits too.
    let (cert, key) = operators_ca(&lab);
    let out = lab.docker_ok(
        "manager1",
        &[
            "swarm",
            "ca",
            "--rotate",
            "--ca-cert",
            cert.to_str().unwrap(),
            "--ca-key",
            key.to_str().unwrap(),
        ],
    );
    let mine = std::fs::read_to_string(&cert).unwrap();
    // Progress lines (the desired root's digest) first, then the new root.
    assert!(out.trim().ends_with(mine.trim()), "{out}");
    wait_for(
        Duration::from_secs(20),
        "every node to trust the operator's root",
        || every_node_trusts_only(&lab, &mine).then_some(()),
    );
    let (issuer, _) = certificate_facts(&lab.certs("worker1").join("node.crt"));
    assert!(issuer.contains("Example Swarm Root"), "{issuer}");

    // A restarted node comes back on what it saved.
    lab.stop("worker1", false);
    lab.start("worker1");
    lab.wait_ready("worker1", Duration::from_secs(30));
    load.finish_without_failures("two root CA rotations");
    let (code, swarm) = lab.engine_api("manager1", "GET", "/swarm", None);
    assert_eq!(code, 200);
    assert_eq!(swarm["RootRotationInProgress"], false);
    assert_eq!(
        swarm["Spec"]["CAConfig"]["NodeCertExpiry"],
        48 * 3600 * 1_000_000_000u64
    );
}

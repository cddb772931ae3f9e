//! Lab clusters for tests: each test owns a uniquely named lab on its own subnet, and the
//! lab is removed when the guard drops, also when the test fails.

#![allow(dead_code)]

pub mod load;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `shoal` binary under test: $SHOAL_BIN, or the one cargo built next to this test.
pub fn shoal_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SHOAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("shoal");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build` first",
        bin.display()
    );
    bin
}

pub fn shoal(args: &[&str]) -> Output {
    shoal_env(&[], args)
}

pub fn shoal_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(shoal_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running shoal")
}

/// The table `shoal debug lb` prints after its heading lines (engine, attach mode).
pub fn lb_table(status: &str) -> String {
    status
        .lines()
        .skip_while(|l| !l.starts_with("FRONTEND"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A command line split at spaces (for arguments without spaces).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The stdout of a command that must have succeeded (`tool` and `args` name it if not).
fn succeeded(node: &str, tool: &str, args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "{node}: {tool} {} failed:\n{}",
        args.join(" "),
        text(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Lab {
    pub name: String,
    pub subnet_prefix: String,
    /// The lab's own record (lab.json), read once on first use: `lab up` writes it.
    record: std::sync::OnceLock<shoal_lab::Lab>,
}

impl Lab {
    /// Brings up lab `name` on 10.239.`net`.0/24; tasks use the process runtime.
    pub fn up(name: &str, net: u8, nodes: u32, managers: u32, heartbeat: &str) -> Lab {
        Lab::up_with(name, net, nodes, managers, heartbeat, "process")
    }

    pub fn up_with(
        name: &str,
        net: u8,
        nodes: u32,
        managers: u32,
        heartbeat: &str,
        runtime: &str,
    ) -> Lab {
        Lab::up_env(name, net, nodes, managers, heartbeat, runtime, &[])
    }

    /// Like up_with; the daemons inherit `env`.
    pub fn up_env(
        name: &str,
        net: u8,
        nodes: u32,
        managers: u32,
        heartbeat: &str,
        runtime: &str,
        env: &[(&str, &str)],
    ) -> Lab {
        Lab::up_full(name, net, nodes, managers, heartbeat, runtime, env, &[])
    }

    /// Like up_env, with more `lab up` flags.
    #[allow(clippy::too_many_arguments)]
    pub fn up_full(
        name: &str,
        net: u8,
        nodes: u32,
        managers: u32,
        heartbeat: &str,
        runtime: &str,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Lab {
        // A crashed earlier run may have left this lab behind.
        let _ = shoal(&["lab", "down", "--name", name]);
        let subnet = format!("10.239.{net}.0/24");
        let lab = Lab {
            name: name.to_string(),
            subnet_prefix: format!("10.239.{net}."),
            record: std::sync::OnceLock::new(),
        };
        let out = shoal_env(
            env,
            &[
                "lab",
                "up",
                "--name",
                name,
                "--nodes",
                &nodes.to_string(),
                "--managers",
                &managers.to_string(),
                "--subnet",
                &subnet,
                "--dispatcher-heartbeat",
                heartbeat,
                "--runtime",
                runtime,
            ]
            .into_iter()
            .chain(flags.iter().copied())
            .collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        lab
    }

    /// `node` as the lab laid it out: its address, namespace and files (shoal-lab's own
    /// record, so tests and the lab cannot disagree on where things are).
    pub fn node(&self, node: &str) -> &shoal_lab::LabNode {
        self.record()
            .node(node)
            .unwrap_or_else(|e| panic!("{node}: {e}"))
    }

    /// The lab as `lab up` laid it out.
    pub fn record(&self) -> &shoal_lab::Lab {
        self.record
            .get_or_init(|| shoal_lab::Lab::load(&self.name).expect("the lab's record"))
    }

    /// The network namespace `node` lives in.
    pub fn netns(&self, node: &str) -> String {
        self.node(node).netns.clone()
    }

    /// The network namespace of a process-runtime task on `node` (the node's daemon
    /// starts task namespaces with the node's own namespace name).
    pub fn task_ns(&self, node: &str, task_id: &str) -> String {
        format!("{}-{}", self.node(node).netns, &task_id[..12])
    }

    pub fn ip(&self, index: u32) -> String {
        format!("{}{}", self.subnet_prefix, 10 + index)
    }

    pub fn dir(&self) -> PathBuf {
        shoal_lab::lab_dir(&self.name)
    }

    pub fn certs(&self, node: &str) -> PathBuf {
        shoal_node::state::SwarmDir::new(&self.node(node).data_dir()).certs_dir()
    }

    /// Runs `shoal ARGS` inside `node`, talking to its daemon.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let bin = shoal_bin();
        let mut full = vec![
            "lab",
            "exec",
            "--name",
            &self.name,
            node,
            "--",
            bin.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        shoal(&full)
    }

    /// Runs the docker CLI inside `node`: `lab exec` points DOCKER_HOST at the node's
    /// Docker Engine API.
    pub fn docker(&self, node: &str, args: &[&str]) -> Output {
        let mut full = vec!["lab", "exec", "--name", &self.name, node, "--", "docker"];
        full.extend_from_slice(args);
        shoal(&full)
    }

    /// Like `docker`, but the command must succeed; returns its stdout.
    pub fn docker_ok(&self, node: &str, args: &[&str]) -> String {
        succeeded(node, "docker", args, &self.docker(node, args))
    }

    /// Like exec, but the command must succeed; returns its stdout.
    pub fn ok(&self, node: &str, args: &[&str]) -> String {
        succeeded(node, "shoal", args, &self.exec(node, args))
    }

    /// Runs `shoal ARGS` in `node`, which must fail with a message containing `why`.
    pub fn refused(&self, node: &str, args: &[&str], why: &str) {
        let out = self.exec(node, args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out).contains(why),
            "{args:?}: expected {why:?} in {}",
            text(&out)
        );
    }

    pub fn stop(&self, node: &str, kill: bool) {
        let mut args = vec!["lab", "stop", "--name", &self.name];
        if kill {
            args.push("--kill");
        }
        args.push(node);
        let out = shoal(&args);
        assert!(out.status.success(), "lab stop {node}: {}", text(&out));
    }

    pub fn start(&self, node: &str) {
        let out = shoal(&["lab", "start", "--name", &self.name, node]);
        assert!(out.status.success(), "lab start {node}: {}", text(&out));
    }

    /// `node ls` as seen from `node`, parsed.
    pub fn nodes(&self, node: &str) -> Vec<NodeRow> {
        parse_node_ls(&self.ok(node, &["node", "ls"]))
    }

    pub fn try_nodes(&self, node: &str) -> Option<Vec<NodeRow>> {
        let out = self.exec(node, &["node", "ls"]);
        out.status
            .success()
            .then(|| parse_node_ls(&String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = shoal(&["lab", "down", "--name", &self.name]);
        if !out.status.success() {
            eprintln!("lab down {} failed: {}", self.name, text(&out));
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub is_self: bool,
    pub hostname: String,
    pub status: String,
    pub availability: String,
    pub manager_status: String,
}

/// Parses `node ls` by the header's column positions, as a person reads it.
pub fn parse_node_ls(out: &str) -> Vec<NodeRow> {
    let mut lines = out.lines();
    let header = lines.next().expect("node ls header");
    let col = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let starts = [
        0,
        col("HOSTNAME"),
        col("STATUS"),
        col("AVAILABILITY"),
        col("MANAGER STATUS"),
        col("ENGINE VERSION"),
    ];
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cell = |i: usize| {
                let end = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                l.get(starts[i].min(l.len())..end)
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let id = cell(0);
            NodeRow {
                is_self: id.ends_with(" *"),
                id: id.trim_end_matches(" *").to_string(),
                hostname: cell(1),
                status: cell(2),
                availability: cell(3),
                manager_status: cell(4),
            }
        })
        .collect()
}

/// Polls `check` until it returns Some, or panics with `what` after `limit`.
pub fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Parses a docker-style table by its header's column starts (headers are separated by
/// two or more spaces; a header may itself contain one space, like DESIRED STATE).
pub fn parse_table(out: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = out.lines();
    let Some(header) = lines.next() else {
        return vec![];
    };
    let mut starts = vec![0usize];
    let bytes = header.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(i, &st)| {
            header[st..starts.get(i + 1).copied().unwrap_or(header.len())]
                .trim()
                .to_string()
        })
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let a = starts[i].min(l.len());
                    let b = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                    (n.clone(), l.get(a..b).unwrap_or("").trim().to_string())
                })
                .collect()
        })
        .collect()
}

impl Lab {
    /// `service ps` rows of `service` as seen from manager1.
    pub fn tasks(&self, service: &str) -> Vec<std::collections::HashMap<String, String>> {
        parse_table(&self.ok("manager1", &["service", "ps", "--no-trunc", service]))
    }

    /// Waits until manager1 lists `node` as Ready.
    pub fn wait_ready(&self, node: &str, limit: Duration) {
        wait_for(limit, &format!("{node} ready"), || {
            self.nodes("manager1")
                .iter()
                .any(|n| n.hostname == node && n.status == "Ready")
                .then_some(())
        });
    }

    /// The first VIP of `service` (without its prefix), from `service inspect`.
    pub fn vip(&self, service: &str) -> String {
        let out = self.ok("manager1", &["service", "inspect", service]);
        let doc: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        doc[0]["Endpoint"]["VirtualIPs"][0]["Addr"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("{service} has no VIP: {out}"))
            .to_string()
    }

    /// Tasks of `service` that are wanted and running: (task ID, node).
    pub fn running(&self, service: &str) -> Vec<(String, String)> {
        self.tasks(service)
            .into_iter()
            .filter(|t| {
                t["DESIRED STATE"] == "Running" && t["CURRENT STATE"].starts_with("Running")
            })
            .map(|t| (t["ID"].clone(), t["NODE"].clone()))
            .collect()
    }

    /// The demo page `node` answers on a published `port`, if it answers.
    pub fn http_get(&self, node: u32, port: u16) -> Option<String> {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "3",
                &format!("http://{}:{port}/", self.ip(node)),
            ])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        body.starts_with("Hello from ").then_some(body)
    }

    /// Waits until `tries` requests to each of `nodes` on `port` all succeed and together
    /// reach `replicas` different tasks.
    pub fn wait_mesh(&self, nodes: &[u32], port: u16, tries: usize, replicas: usize) {
        wait_for(
            Duration::from_secs(20),
            &format!("port {port} on nodes {nodes:?} to reach {replicas} replicas"),
            || {
                let mut seen = std::collections::BTreeSet::new();
                for &i in nodes {
                    for _ in 0..tries {
                        seen.insert(self.http_get(i, port)?);
                    }
                }
                (seen.len() == replicas).then_some(())
            },
        );
    }

    /// One request to a node's docker.sock: (status code, body).
    pub fn engine_api(
        &self,
        node: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let socket = self.dir().join(node).join("run/docker.sock");
        let mut args = vec![
            "-s".to_string(),
            "--unix-socket".into(),
            socket.display().to_string(),
            "-X".into(),
            method.into(),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        if let Some(b) = body {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                b.into(),
            ]);
        }
        args.push(format!("http://docker{path}"));
        let out = Command::new("curl").args(&args).output().unwrap();
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = all
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl: {}", text(&out)));
        let json =
            serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
        (code.parse().unwrap(), json)
    }

    /// `service inspect` of `service` from manager1, parsed (the first object).
    pub fn inspect(&self, service: &str) -> serde_json::Value {
        let out = self.ok("manager1", &["service", "inspect", service]);
        let mut doc: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        doc[0].take()
    }

    /// Waits until the last update of `service` has completed.
    pub fn wait_update_completed(&self, service: &str, limit: Duration) {
        wait_for(
            limit,
            &format!("the update of {service} to complete"),
            || (self.inspect(service)["UpdateStatus"]["State"] == "completed").then_some(()),
        );
    }

    /// Waits until exactly `n` tasks of `service` run; returns them.
    pub fn wait_running(&self, service: &str, n: usize) -> Vec<(String, String)> {
        wait_for(
            Duration::from_secs(30),
            &format!("{n} running tasks of {service}"),
            || {
                let r = self.running(service);
                let wanted = self
                    .tasks(service)
                    .into_iter()
                    .filter(|t| t["DESIRED STATE"] == "Running")
                    .count();
                (r.len() == n && wanted == n).then_some(r)
            },
        )
        .0
    }
}

/// Runs the docker CLI, which must succeed; returns its stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv4 address (without prefix) of `ifname` in namespace `ns`.
pub fn addr_of(ns: &str, ifname: &str) -> Option<std::net::Ipv4Addr> {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", ifname])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Runs `f` on a thread inside the namespace `ns` (sockets, netlink, engines live there).
pub fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace");
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// `dig +short ARGS` from inside a namespace: the answer lines.
pub fn dig(ns: &str, args: &[&str]) -> std::collections::BTreeSet<String> {
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

/// A stand-in for the internet's resolvers: dnsmasq on the lab's host address, knowing
/// one name and forwarding nothing.
pub struct Upstream(std::process::Child);

impl Upstream {
    /// Knows outside.test, says gone.test does not exist, logs every query to `log`.
    pub fn start(addr: &str, log: &std::path::Path) -> Upstream {
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={addr}"),
                "--port=53",
                "--address=/outside.test/192.0.2.7",
                "--address=/gone.test/",
                "--log-queries",
                &format!("--log-facility={}", log.display()),
                "--pid-file=",
            ])
            .spawn()
            .expect("dnsmasq (scripts/setup.sh installs dnsmasq-base)");
        Upstream(child)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

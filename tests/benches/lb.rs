//! Benchmark, on demand (`sudo ./scripts/bench-mesh.sh`): the load-balancer engines side
//! by side on one machine, in namespaces this program makes and removes.
//!
//! client ns --veth-- node ns (the engine; its "uplink" and ingress leg) --veth-- task ns
//! (a small keep-alive HTTP server). Measured with wrk from the client:
//! - requests/s through the mesh (client -> node:8080 -> task:80) over requests/s straight
//!   to the task (routed by the node, no balancing), with keep-alive and with a new
//!   connection per request;
//! - ebpf over nftables through the mesh, with 10 and with 10,000 published services;
//! - the time to program 1k / 10k / 50k backends, and to add or remove one, per engine.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::within;
use shoal_agent::gossip::Protocol;
use shoal_agent::lb::plan::MeshFrontend;
use shoal_agent::lb::{Engine, Leg};

const CLIENT: &str = "shb-client";
const NODE: &str = "shb-node";
const TASK: &str = "shb-task";
const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const LEG_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 250, 2);
const TASK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 250, 3);
const SECONDS: &str = "5";
const ENGINES: [&str; 2] = ["ebpf", "nftables"];

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The three namespaces, removed on drop (also when the benchmark panics).
struct Topology;

impl Topology {
    fn new() -> Topology {
        Topology::remove();
        for ns in [CLIENT, NODE, TASK] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", "shb-c0", "netns", CLIENT, "type", "veth", "peer", "name", "up0",
            "netns", NODE,
        ]);
        sh(&[
            "ip",
            "link",
            "add",
            "shoal_ingress",
            "netns",
            NODE,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            TASK,
        ]);
        sh(&[
            "ip",
            "-n",
            NODE,
            "link",
            "set",
            "shoal_ingress",
            "address",
            &mac(LEG_ADDR),
        ]);
        sh(&[
            "ip",
            "-n",
            TASK,
            "link",
            "set",
            "eth0",
            "address",
            &mac(TASK_ADDR),
        ]);
        for (ns, dev, addr) in [
            (CLIENT, "shb-c0", "10.250.0.1/24"),
            (NODE, "up0", "10.250.0.2/24"),
            (NODE, "shoal_ingress", "10.0.250.2/24"),
            (TASK, "eth0", "10.0.250.3/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // "Direct": the client reaches the task routed by the node, without balancing.
        sh(&[
            "ip",
            "-n",
            CLIENT,
            "route",
            "add",
            "10.0.250.0/24",
            "via",
            "10.250.0.2",
        ]);
        sh(&[
            "ip",
            "-n",
            TASK,
            "route",
            "add",
            "default",
            "via",
            "10.0.250.2",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            NODE,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        Topology
    }

    fn remove() {
        for ns in [CLIENT, NODE, TASK] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all("/sys/fs/bpf/shoal/shb-node");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        Topology::remove();
    }
}

/// A minimal HTTP/1.1 server in the task namespace: keep-alive unless asked to close.
fn serve() {
    let listener = within(TASK, || {
        TcpListener::bind("0.0.0.0:80").expect("binding :80")
    });
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                loop {
                    let (mut line, mut close) = (String::new(), false);
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        close |= line.to_ascii_lowercase().starts_with("connection: close");
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = "Hello from shb-task\n";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if writer.write_all(reply.as_bytes()).is_err() || close {
                        return;
                    }
                }
            });
        }
    });
}

/// wrk from the client namespace: requests per second.
fn wrk(url: &str, new_connections: bool) -> f64 {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", CLIENT, "wrk", "-t", "1", "-c", "16", "-d", SECONDS,
    ]);
    if new_connections {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk said: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn leg() -> Leg {
    Leg {
        network_id: "bench".into(),
        ifname: "shoal_ingress".into(),
        addr: LEG_ADDR,
    }
}

/// `services` published ports: 8080 to the real task, last (where a rule list is
/// longest to walk), the others to addresses nobody uses, `per` backends each.
fn frontends(services: usize, per: usize) -> Vec<MeshFrontend> {
    let mut all = vec![];
    for i in 1..services {
        let backends = (0..per)
            .map(|j| {
                let n = (i * per + j) as u32;
                (Ipv4Addr::from(0x0a64_0000 + n), 80)
            })
            .collect();
        all.push(MeshFrontend {
            protocol: Protocol::Tcp,
            port: 10000 + i as u16,
            service_name: format!("s{i}"),
            backends,
        });
    }
    all.push(MeshFrontend {
        protocol: Protocol::Tcp,
        port: 8080,
        service_name: "web".into(),
        backends: vec![(TASK_ADDR, 80)],
    });
    all
}

fn engine(name: &str) -> Arc<dyn Engine> {
    let name = name.to_string();
    within(NODE, move || {
        shoal_agent::lb::engine(&name, "auto", NODE_ADDR, "shb-node").expect("engine")
    })
}

fn program(engine: &Arc<dyn Engine>, mesh: Vec<MeshFrontend>) -> Duration {
    let engine = engine.clone();
    within(NODE, move || {
        let start = Instant::now();
        engine.program_node(&mesh, &leg()).expect("programming");
        start.elapsed()
    })
}

fn clear(engine: &Arc<dyn Engine>) {
    let engine = engine.clone();
    within(NODE, move || {
        let _ = engine.program_node(&[], &leg());
        let _ = engine.clear_node();
    });
}

fn main() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark makes namespaces: run it as root"
    );
    let _topology = Topology::new();
    serve();
    std::thread::sleep(Duration::from_millis(200));
    // `-- throughput` or `-- program` runs one part (cargo bench passes --bench too).
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if wants("throughput") {
        throughput();
    }
    if wants("program") {
        programming();
    }
}

/// Requests/s through the mesh and straight to the task, per engine.
fn throughput() {
    let direct = format!("http://{TASK_ADDR}/");
    let mesh = format!("http://{NODE_ADDR}:8080/");

    println!("Requests/s, {SECONDS} s each, wrk -t1 -c16 from another namespace:");
    println!("{:<44} {:>12} {:>12}", "", "keep-alive", "new conn.");
    let direct_rates = (wrk(&direct, false), wrk(&direct, true));
    println!(
        "{:<44} {:>12.0} {:>12.0}",
        "direct to the task (routed, no balancing)", direct_rates.0, direct_rates.1
    );
    let mut rates = std::collections::HashMap::new();
    for name in ENGINES {
        let e = engine(name);
        assert_eq!(e.name(), name, "the {name} engine did not load (see above)");
        for services in [10, 10_000] {
            program(&e, frontends(services, 2));
            let r = (wrk(&mesh, false), wrk(&mesh, true));
            println!(
                "{:<44} {:>12.0} {:>12.0}",
                format!("mesh, {name}, {services} services"),
                r.0,
                r.1
            );
            rates.insert((name, services), r);
        }
        clear(&e);
    }
    println!();
    println!("Ratios (higher is better for shoal):");
    for name in ENGINES {
        let r = rates[&(name, 10)];
        println!(
            "  mesh/direct, {name}: keep-alive {:.2}x, new connections {:.2}x",
            r.0 / direct_rates.0,
            r.1 / direct_rates.1
        );
    }
    for services in [10, 10_000] {
        let (e, n) = (rates[&("ebpf", services)], rates[&("nftables", services)]);
        println!(
            "  ebpf/nftables, {services} services: keep-alive {:.2}x, new connections {:.2}x",
            e.0 / n.0,
            e.1 / n.1
        );
    }
}

/// The time each engine takes to program 1k / 10k / 50k backends, and to add or remove one.
fn programming() {
    println!();
    println!("Time to program backends (10 per service), and to add or remove one:");
    println!(
        "{:<10} {:>10} {:>12} {:>12} {:>12}",
        "engine", "backends", "program", "add one", "remove one"
    );
    for name in ENGINES {
        let e = engine(name);
        for backends in [1_000, 10_000, 50_000] {
            let mut mesh = frontends(backends / 10, 10);
            let full = program(&e, mesh.clone());
            mesh[0].backends.push((Ipv4Addr::new(10, 99, 0, 1), 80));
            let add = program(&e, mesh.clone());
            mesh[0].backends.pop();
            mesh[0].backends.pop();
            let remove = program(&e, mesh);
            println!("{name:<10} {backends:>10} {full:>12.2?} {add:>12.2?} {remove:>12.2?}");
            clear(&e);
        }
    }
}

//! Starting, stopping and entering the lab's per-node daemons.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{IoContext, LabError, Result};

use super::LabNode;

/// Each lab daemon's log rotates at this size (MiB): a lab of many nodes stays small.
const LOG_MAX_MIB: &str = "10";

/// Starts the node's daemon inside its namespace, detached, logging to its log file.
pub fn start(node: &LabNode) -> Result<()> {
    if let Some(pid) = running_pid(node) {
        return Err(LabError::Invalid(format!(
            "the daemon of {} is already running (pid {pid})",
            node.name
        )));
    }
    let exe = std::env::current_exe().io(|| "locating the shoal binary".into())?;
    // The log proper rotates (--log-file); what is written to stderr (a panic) goes to
    // a file of its own, which only grows by a panic's worth.
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.stderr_log())
        .io(|| format!("opening {}", node.stderr_log().display()))?;
    // Enter only the node's network namespace: unlike `ip netns exec`, this keeps the
    // host's mount namespace, so the namespaces the daemon makes for tasks are visible to
    // the host (and to `lab down`).
    let netns = std::fs::File::open(std::path::Path::new("/run/netns").join(&node.netns))
        .io(|| format!("opening the namespace of {}", node.name))?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon")
        .arg("--data-dir")
        .arg(node.data_dir())
        .arg("--run-dir")
        .arg(node.run_dir())
        .args([
            "--advertise-addr",
            &node.ip,
            "--hostname",
            &node.name,
            "--runtime",
            &node.runtime,
            "--netns-prefix",
            &node.netns,
            "--lb-engine",
            &node.lb_engine,
            "--lb-attach",
            &node.lb_attach,
            // docker -H tcp://NODE:2376 --tlsverify ... from the host, on managers.
            "--engine-api-addr",
            &format!("{}:2376", node.ip),
            "--log-file",
        ])
        .arg(node.log())
        .args(["--log-max-size", LOG_MAX_MIB])
        // The lab has no uplink: unless told of a resolver, tasks resolve cluster names only.
        .args(if node.dns_upstreams.is_empty() {
            vec!["--dns-upstream".to_string(), "none".to_string()]
        } else {
            node.dns_upstreams
                .iter()
                .flat_map(|u| ["--dns-upstream".to_string(), u.clone()])
                .collect()
        })
        .stdin(Stdio::null())
        .stdout(
            stderr
                .try_clone()
                .io(|| format!("opening {}", node.stderr_log().display()))?,
        )
        .stderr(stderr);
    use std::os::fd::AsRawFd;
    let fd = netns.as_raw_fd();
    // SAFETY: setsid and setns are async-signal-safe; the fd stays open until exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().io(|| "starting the node daemon".into())?;
    std::fs::write(node.pid_file(), child.id().to_string())
        .io(|| format!("writing {}", node.pid_file().display()))?;
    Ok(())
}

/// Waits until the daemon answers on its control socket.
pub async fn wait_ready(node: &LabNode) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = node.target().connect().await
            && c.info(shoal_proto::Empty {}).await.is_ok()
        {
            return Ok(());
        }
        if running_pid(node).is_none() {
            return Err(LabError::Failed(format!(
                "the daemon of {} exited; see {}",
                node.name,
                node.log().display()
            )));
        }
        if Instant::now() > deadline {
            return Err(LabError::Failed(format!(
                "the daemon of {} did not answer within 20 s; see {}",
                node.name,
                node.log().display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn running_pid(node: &LabNode) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(node.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Stops the node's daemon and waits for it to exit.
pub fn stop(node: &LabNode, kill: bool) -> Result<()> {
    let pid = running_pid(node)
        .ok_or_else(|| LabError::Invalid(format!("the daemon of {} is not running", node.name)))?;
    if kill {
        // SAFETY: plain syscall on a PID we started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_gone(pid, Duration::from_secs(5));
    } else {
        kill_and_wait(pid, Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(node.pid_file());
    Ok(())
}

/// SIGTERM, then SIGKILL if the process outlives `grace`.
pub fn kill_and_wait(pid: i32, grace: Duration) {
    // SAFETY: plain syscalls.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if !wait_gone(pid, grace) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_gone(pid, Duration::from_secs(5));
    }
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// Replaces this process with `command` run inside the node's namespace.
pub fn exec_in(node: &LabNode, command: &[String]) -> Result<()> {
    let err = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(command)
        .env("SHOAL_HOST", format!("unix://{}", node.socket().display()))
        .env(
            "DOCKER_HOST",
            format!("unix://{}", node.docker_socket().display()),
        )
        .exec();
    Err(LabError::Failed(format!(
        "running {:?} in {}: {err}",
        command, node.name
    )))
}

/// The last lines of the node's log, and whatever its daemon wrote to stderr.
pub fn log_tail(node: &LabNode, lines: usize) -> Option<String> {
    let text = std::fs::read_to_string(node.log()).ok()?;
    let all: Vec<&str> = text.lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    if let Ok(err) = std::fs::read_to_string(node.stderr_log())
        && !err.trim().is_empty()
    {
        tail.push_str(&format!(
            "\n--- {}:\n{}",
            node.stderr_log().display(),
            err.trim()
        ));
    }
    Some(tail)
}

/// Removes every task workload a node's daemon left (they outlive the daemon by design,
/// so a restarted agent can adopt them).
pub async fn remove_workloads(node: &LabNode) {
    use shoal_agent::runtime::remove_all;
    let now = Duration::ZERO;
    let process = shoal_agent::runtime::process::ProcessRuntime::new(&node.run_dir(), &node.netns);
    remove_all(&process, now).await;
    let saved = shoal_node::state::SwarmDir::new(&node.data_dir()).load_state();
    let node_id = saved.ok().flatten().map(|state| state.node_id);
    if let Some(id) = node_id
        && std::path::Path::new("/var/run/docker.sock").exists()
        && let Ok(docker) =
            shoal_agent::runtime::docker::DockerRuntime::connect(&id, &node.run_dir()).await
    {
        remove_all(&docker, now).await;
    }
    // Any task's secrets tmpfs still mounted (its container went some other way).
    shoal_agent::runtime::files::HostTmpfs::new(&node.run_dir()).sweep(&Default::default());
}

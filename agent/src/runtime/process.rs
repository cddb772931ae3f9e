//! The process runtime: each task's command runs under the agent in its own network
//! namespace (<netns-prefix>-<task>) and UTS namespace (its hostname is the task's short
//! ID, as a container's would be), with stdout and stderr kept in a log file. State is
//! kept under <run-dir>/tasks so a restarted agent adopts what is still running.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use shoal_proto::Task;

use super::files::{NamespaceFiles, TaskFile, process_dir};
use super::{Existing, Runtime, RuntimeError, container_spec, demo};

pub struct ProcessRuntime {
    dir: PathBuf,
    netns_prefix: String,
    children: Mutex<HashMap<String, Child>>,
    /// The command that stamps output lines into a file named after it (stamp.rs);
    /// without one, output is written as it comes, with no times.
    log_stamper: Option<Vec<std::ffi::OsString>>,
    /// Stampers started here, reaped once they have ended (at their task's EOF).
    stampers: Mutex<Vec<Child>>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(format!("{what}: {e}"))
}

fn ip(args: &[&str]) -> Result<(), RuntimeError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| failed("running ip", e))?;
    if !out.status.success() {
        return Err(failed(
            &format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(())
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

impl ProcessRuntime {
    /// `run_dir` is the daemon's; `netns_prefix` starts the name of every namespace the
    /// node makes (see the daemon's --netns-prefix).
    pub fn new(run_dir: &Path, netns_prefix: &str) -> Self {
        ProcessRuntime {
            dir: run_dir.join("tasks"),
            netns_prefix: netns_prefix.to_string(),
            children: Mutex::new(HashMap::new()),
            log_stamper: None,
            stampers: Mutex::default(),
        }
    }

    /// Output lines get their time from `argv` + the log file (the shoal binary's
    /// `__stamp-log`).
    #[must_use]
    pub fn with_log_stamper(mut self, argv: Vec<std::ffi::OsString>) -> Self {
        self.log_stamper = Some(argv);
        self
    }

    /// Collects the stampers whose tasks' output has closed (no thread waits on them).
    fn reap_stampers(&self) {
        self.stampers
            .lock()
            .expect("poisoned")
            .retain_mut(|s| matches!(s.try_wait(), Ok(None)));
    }

    /// Where the task's stdout and stderr go: a pipe into the stamper, which appends to
    /// `log`, or the file itself.
    fn output(&self, log: &Path) -> Result<(Stdio, Stdio), RuntimeError> {
        let twice = |e| failed("sharing the log between stdout and stderr", e);
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| failed("opening the log", e))
        };
        let Some(argv) = &self.log_stamper else {
            let f = file()?;
            return Ok((f.try_clone().map_err(twice)?.into(), f.into()));
        };
        let (reader, writer) = std::io::pipe().map_err(|e| failed("making the log pipe", e))?;
        let mut stamper = Command::new(&argv[0]);
        stamper
            .args(&argv[1..])
            .arg(log)
            .stdin(reader)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own session, as the task's: it outlives an agent restart with the task,
        // and ends when the task's output does.
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            stamper.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = stamper
            .spawn()
            .map_err(|e| failed("starting the log stamper", e))?;
        self.reap_stampers();
        self.stampers.lock().expect("poisoned").push(child);
        Ok((writer.try_clone().map_err(twice)?.into(), writer.into()))
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn netns(&self, id: &str) -> String {
        format!("{}-{}", self.netns_prefix, &id[..id.len().min(12)])
    }

    fn pid(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.task_dir(id).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn command_of(&self, task: &Task) -> Result<Vec<String>, RuntimeError> {
        let c = container_spec(task);
        let mut argv: Vec<String> = c.command.iter().chain(c.args.iter()).cloned().collect();
        if argv.is_empty() {
            if demo::is_demo_image(&c.image) {
                argv = vec![
                    "/bin/sh".into(),
                    self.task_dir(&task.id)
                        .join("entrypoint.sh")
                        .display()
                        .to_string(),
                ];
            } else {
                return Err(RuntimeError::Rejected(format!(
                    "the process runtime runs a service's command on the host, and image {} has no built-in equivalent: give a command (shoal service create IMAGE COMMAND ...)",
                    c.image
                )));
            }
        }
        Ok(argv)
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn prepare(&self, task: &Task) -> Result<(), RuntimeError> {
        let engine_only = task.spec.clone().unwrap_or_default().engine_settings();
        if !engine_only.is_empty() {
            return Err(RuntimeError::Rejected(format!(
                "the process runtime cannot honour {}: run this service on nodes with the docker runtime (a placement constraint), or remove them",
                engine_only.join(", ")
            )));
        }
        if let Some(c) = task.spec.as_ref().and_then(|s| s.container.as_ref())
            && let Some(r) = c.configs.iter().find(|r| {
                r.file
                    .as_ref()
                    .is_some_and(|f| process_dir(&f.name).is_none())
            })
        {
            let target = r.file.as_ref().map(|f| f.name.as_str()).unwrap_or_default();
            return Err(RuntimeError::Rejected(format!(
                "config {} targets {target}, but the process runtime runs tasks on the host's filesystem and places their files only under /run/secrets or /run/configs: give it target=/run/configs/{}, or run the service with the docker runtime",
                r.config_name,
                target.rsplit('/').next().unwrap_or_default()
            )));
        }
        let argv = self.command_of(task)?;
        if !argv[0].contains('/') && which(&argv[0]).is_none() {
            return Err(RuntimeError::Rejected(format!(
                "executable file not found in $PATH: {}",
                argv[0]
            )));
        }
        Ok(())
    }

    async fn start(&self, task: &Task, files: &[TaskFile]) -> Result<String, RuntimeError> {
        let id = task.id.clone();
        let files = NamespaceFiles::plan(files)?;
        files.make_mount_points()?;
        let dir = self.task_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| failed("creating the task directory", e))?;
        let c = container_spec(task);
        if demo::is_demo_image(&c.image) {
            std::fs::write(dir.join("entrypoint.sh"), demo::ENTRYPOINT)
                .map_err(|e| failed("writing the entrypoint", e))?;
        }
        let argv = self.command_of(task)?;
        let ns = self.netns(&id);
        if !Path::new("/run/netns").join(&ns).exists() {
            ip(&["netns", "add", &ns])?;
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // `ip netns exec` mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
        if !task.networks.is_empty() {
            let etc = Path::new("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).map_err(|e| failed("creating /etc/netns", e))?;
            std::fs::write(etc.join("resolv.conf"), crate::dns::RESOLV_CONF)
                .map_err(|e| failed("writing the task's resolv.conf", e))?;
        }
        let (stdout, stderr) = self.output(&dir.join("output.log"))?;
        let hostname = self.hostname(task, &id);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .args(&argv)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("HOSTNAME", &hostname)
            .env("WWW", dir.join("www"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for kv in &c.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        if !c.dir.is_empty() {
            cmd.current_dir(&c.dir);
        }
        let name = hostname.clone();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Only system calls on what `plan` prepared.
                files.apply()?;
                if libc::setsid() < 0 || libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed("starting the task's command", e))?;
        std::fs::write(dir.join("pid"), child.id().to_string())
            .map_err(|e| failed("writing the pid file", e))?;
        self.children
            .lock()
            .expect("poisoned")
            .insert(id.clone(), child);
        Ok(id)
    }

    async fn sandbox(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let path = Path::new("/run/netns").join(self.netns(id));
        if !path.exists() || self.pid(id).is_none() {
            return Err(RuntimeError::Failed(format!("no task {id} runs here")));
        }
        Ok(path)
    }

    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        loop {
            {
                let mut children = self.children.lock().expect("poisoned");
                if let Some(child) = children.get_mut(id) {
                    if let Some(status) = child.try_wait().map_err(|e| failed("waiting", e))? {
                        children.remove(id);
                        use std::os::unix::process::ExitStatusExt;
                        let code = status.code().map_or_else(
                            || 128 + i64::from(status.signal().unwrap_or(0)),
                            i64::from,
                        );
                        let _ =
                            std::fs::write(self.task_dir(id).join("exit_code"), code.to_string());
                        return Ok(code);
                    }
                } else if !self.pid(id).is_some_and(alive) {
                    // Adopted after a restart: the exit code was not ours to collect.
                    return Ok(std::fs::read_to_string(self.task_dir(id).join("exit_code"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(pid) = self.pid(id) else {
            return Ok(());
        };
        let sig = signal_number(signal);
        // SAFETY: signalling the task's own process group (it called setsid).
        unsafe { libc::kill(-pid, sig) };
        let deadline = tokio::time::Instant::now() + grace;
        while alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        if let Some(pid) = self.pid(id).filter(|p| alive(*p)) {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        self.children.lock().expect("poisoned").remove(id);
        self.reap_stampers();
        let ns = self.netns(id);
        if Path::new("/run/netns").join(&ns).exists() {
            ip(&["netns", "del", &ns])?;
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        let _ = std::fs::remove_dir_all(self.task_dir(id));
        Ok(())
    }

    async fn existing(&self) -> Result<Vec<Existing>, RuntimeError> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(vec![]);
        };
        Ok(dir
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .map(|id| Existing {
                running: self.pid(&id).is_some_and(alive),
                runtime_id: id.clone(),
                task_id: id,
            })
            .collect())
    }

    async fn logs(&self, id: &str) -> Result<String, RuntimeError> {
        Ok(std::fs::read_to_string(self.task_dir(id).join("output.log")).unwrap_or_default())
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

/// SIGTERM unless the spec names another signal (by name or number).
pub fn signal_number(name: &str) -> i32 {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    match n {
        "" | "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        other => other.parse().unwrap_or(libc::SIGTERM),
    }
}

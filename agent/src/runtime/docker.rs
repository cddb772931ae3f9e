//! The docker runtime: one container per task through the local dockerd (bollard), named
//! <service>.<slot>.<task-id> and labelled as Swarm labels them, started with network mode
//! none (the network driver plumbs its namespace). Images come from the local store only.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use shoal_proto::Task;

use super::files::{HostTmpfs, TaskFile};
use super::{Existing, Runtime, RuntimeError, container_spec, docker_config, task_name};

pub const LABEL_TASK: &str = "com.docker.swarm.task.id";
pub const LABEL_NODE: &str = "com.docker.swarm.node.id";
pub const LABEL_SERVICE: &str = "com.docker.swarm.service.id";
pub const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
pub const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";

pub struct DockerRuntime {
    docker: Docker,
    node_id: String,
    /// Each task's secrets and configs, in a tmpfs of its own.
    files: HostTmpfs,
}

fn failed(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(format!("{what}: {e}"))
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerRuntime {
    /// Connects to the local dockerd and agrees on an API version with it; the tasks'
    /// secrets and configs go in tmpfs mounts under `run_dir`.
    pub async fn connect(node_id: &str, run_dir: &std::path::Path) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| {
                failed(
                    "connecting to dockerd (is it running? `scripts/setup.sh` starts it)",
                    e,
                )
            })?
            .negotiate_version()
            .await
            .map_err(|e| {
                failed(
                    "talking to dockerd (is it running? `scripts/setup.sh` starts it)",
                    e,
                )
            })?;
        Ok(DockerRuntime {
            docker,
            node_id: node_id.to_string(),
            files: HostTmpfs::new(run_dir),
        })
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn prepare(&self, task: &Task) -> Result<(), RuntimeError> {
        let image = container_spec(task).image;
        match self.docker.inspect_image(&image).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(RuntimeError::Rejected(format!(
                "No such image: {image} (images are used from this node's local store: build or load it here first)"
            ))),
            Err(e) => Err(failed("inspecting the image", e)),
        }
    }

    async fn start(&self, task: &Task, files: &[TaskFile]) -> Result<String, RuntimeError> {
        let c = container_spec(task);
        let mut host_config = docker_config::host_config(task);
        for (source, f) in self.files.write(&task.id, files)? {
            host_config
                .mounts
                .get_or_insert_default()
                .push(docker_config::file_mount(&source, &f.path));
        }
        let name = task_name(task);
        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.insert(LABEL_TASK.into(), task.id.clone());
        labels.insert(LABEL_NODE.into(), self.node_id.clone());
        labels.insert(LABEL_SERVICE.into(), task.service_id.clone());
        labels.insert(LABEL_SERVICE_NAME.into(), task.service_name.clone());
        labels.insert(LABEL_TASK_NAME.into(), name.clone());
        let healthcheck = c
            .healthcheck
            .as_ref()
            .filter(|h| !h.test.is_empty())
            .map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: (h.interval_nanos > 0).then_some(h.interval_nanos),
                timeout: (h.timeout_nanos > 0).then_some(h.timeout_nanos),
                start_period: (h.start_period_nanos > 0).then_some(h.start_period_nanos),
                retries: (h.retries > 0).then_some(i64::from(h.retries)),
                ..Default::default()
            });
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            // As in Swarm: the service's command replaces the entrypoint, its args the CMD.
            entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
            cmd: (!c.args.is_empty()).then(|| c.args.clone()),
            env: (!c.env.is_empty()).then(|| c.env.clone()),
            hostname: (!c.hostname.is_empty()).then(|| c.hostname.clone()),
            user: (!c.user.is_empty()).then(|| c.user.clone()),
            working_dir: (!c.dir.is_empty()).then(|| c.dir.clone()),
            stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
            tty: c.tty.then_some(true),
            open_stdin: c.open_stdin.then_some(true),
            labels: Some(labels),
            healthcheck,
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| {
                self.files.remove(&task.id);
                failed("creating the container", e)
            })?;
        self.docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| failed("starting the container", e))?;
        Ok(created.id)
    }

    async fn sandbox(&self, id: &str) -> Result<std::path::PathBuf, RuntimeError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| failed("inspecting the container", e))?;
        match info.state.and_then(|s| s.pid).filter(|pid| *pid > 0) {
            Some(pid) => Ok(format!("/proc/{pid}/ns/net").into()),
            None => Err(failed(
                "finding the container's namespace",
                "it is not running",
            )),
        }
    }

    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(failed("waiting for the container", e)),
            None => Err(failed(
                "waiting for the container",
                "no answer from dockerd",
            )),
        }
    }

    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptions {
            t: Some(grace.as_secs() as i32),
            signal: (!signal.is_empty()).then(|| signal.to_string()),
        };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(failed("stopping the container", e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let task = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.config?.labels?.get(LABEL_TASK).cloned());
        // Anonymous volumes go with the task, as in Swarm; named ones stay.
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(failed("removing the container", e)),
        };
        if removed.is_ok()
            && let Some(task) = task
        {
            self.files.remove(&task);
        }
        removed
    }

    async fn existing(&self) -> Result<Vec<Existing>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_NODE}={}", self.node_id)],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| failed("listing containers", e))?;
        let existing: Vec<Existing> = list
            .into_iter()
            .filter_map(|c| {
                let task_id = c.labels.as_ref()?.get(LABEL_TASK)?.clone();
                Some(Existing {
                    task_id,
                    runtime_id: c.id?,
                    running: c.state.map(|s| s.to_string()) == Some("running".into()),
                })
            })
            .collect();
        // The files of a container gone while the agent was away go too.
        self.files
            .sweep(&existing.iter().map(|e| e.task_id.clone()).collect());
        Ok(existing)
    }

    async fn health(&self, id: &str) -> Option<String> {
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("inspecting container {id}: {e}");
                return None;
            }
        };
        let status = c.state?.health?.status?;
        match status.to_string().as_str() {
            "" | "none" => None,
            s => Some(s.to_string()),
        }
    }

    async fn logs(&self, id: &str) -> Result<String, RuntimeError> {
        let mut stream = self.docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                timestamps: true,
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => out.push_str(&c.to_string()),
                Err(e) => return Err(failed("reading logs", e)),
            }
        }
        Ok(out)
    }
}

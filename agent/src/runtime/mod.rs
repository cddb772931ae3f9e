//! Task runtimes behind one trait: `docker` (containers through bollard, started with
//! network mode none) and `process` (a command in a fresh network namespace, for hosts
//! without Docker and for fast tests).

pub mod demo;
pub mod docker;
mod docker_config;
pub mod files;
pub mod process;
pub mod stamp;

use std::time::Duration;

use shoal_proto::Task;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The task can never run here as specified (missing image, bad command).
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Failed(String),
}

/// A workload the runtime finds already running (after an agent restart).
#[derive(Debug, Clone)]
pub struct Existing {
    pub task_id: String,
    pub runtime_id: String,
    pub running: bool,
}

/// Stops (SIGTERM, then SIGKILL after `grace`) and removes every workload of this node:
/// what leaving the swarm does to its tasks, as Docker does.
pub async fn remove_all(rt: &dyn Runtime, grace: Duration) {
    let workloads = rt.existing().await.unwrap_or_default();
    futures::future::join_all(workloads.iter().map(|w| async move {
        if w.running
            && let Err(e) = rt.stop(&w.runtime_id, "SIGTERM", grace).await
        {
            tracing::warn!(task = %w.task_id, "stopping the task's workload: {e}");
        }
        if let Err(e) = rt.remove(&w.runtime_id).await {
            tracing::warn!(task = %w.task_id, "removing the task's workload: {e}");
        }
    }))
    .await;
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    /// Checks the task can run here (image present, command known).
    async fn prepare(&self, task: &Task) -> Result<(), RuntimeError>;
    /// Creates and starts the workload with its secrets and configs (`files`); returns
    /// the runtime's ID for it.
    async fn start(&self, task: &Task, files: &[files::TaskFile]) -> Result<String, RuntimeError>;
    /// Waits for the workload to exit; returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64, RuntimeError>;
    /// Stops it: the stop signal, then SIGKILL after `grace`.
    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes what is left of it.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Workloads of this node already present.
    async fn existing(&self) -> Result<Vec<Existing>, RuntimeError>;
    /// The workload's output so far (stdout and stderr), each line led by the time it
    /// was written (RFC 3339, UTC) and a space, as dockerd's timestamps give it.
    async fn logs(&self, id: &str) -> Result<String, RuntimeError>;
    /// The hostname the workload sees: the spec's, or the short workload ID (as Docker
    /// gives a container).
    fn hostname(&self, task: &Task, id: &str) -> String {
        let c = container_spec(task);
        if c.hostname.is_empty() {
            id[..id.len().min(12)].to_string()
        } else {
            c.hostname
        }
    }
    /// The path of the workload's network namespace, for the network driver.
    async fn sandbox(&self, id: &str) -> Result<std::path::PathBuf, RuntimeError>;
    /// Its healthcheck state (starting, healthy, unhealthy), where it has a healthcheck.
    async fn health(&self, _id: &str) -> Option<String> {
        None
    }
}

/// The name docker gives a swarm task's container: <service>.<slot|node>.<task id>.
pub fn task_name(task: &Task) -> String {
    let middle = if task.slot > 0 {
        task.slot.to_string()
    } else {
        task.node_id.clone()
    };
    format!("{}.{}.{}", task.service_name, middle, task.id)
}

pub fn container_spec(task: &Task) -> shoal_proto::ContainerSpec {
    task.spec
        .as_ref()
        .and_then(|s| s.container.clone())
        .unwrap_or_default()
}

/// A runtime that cannot run anything, and says why.
pub struct Unavailable(pub String);

#[async_trait::async_trait]
impl Runtime for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }
    async fn prepare(&self, _: &Task) -> Result<(), RuntimeError> {
        Err(RuntimeError::Rejected(self.0.clone()))
    }
    async fn start(&self, _: &Task, _: &[files::TaskFile]) -> Result<String, RuntimeError> {
        Err(RuntimeError::Rejected(self.0.clone()))
    }
    async fn wait(&self, _: &str) -> Result<i64, RuntimeError> {
        Err(RuntimeError::Failed(self.0.clone()))
    }
    async fn stop(&self, _: &str, _: &str, _: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn remove(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn existing(&self) -> Result<Vec<Existing>, RuntimeError> {
        Ok(vec![])
    }
    async fn logs(&self, _: &str) -> Result<String, RuntimeError> {
        Ok(String::new())
    }
    async fn sandbox(&self, _: &str) -> Result<std::path::PathBuf, RuntimeError> {
        Err(RuntimeError::Failed(self.0.clone()))
    }
}

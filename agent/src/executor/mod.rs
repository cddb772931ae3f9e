//! The task executor: follows the node's assignments from the dispatcher and drives each
//! task through NEW .. RUNNING to COMPLETE, FAILED, SHUTDOWN or REJECTED on its runtime,
//! reporting every step. Workloads found running after an agent restart are adopted, not
//! started twice; workloads whose task is gone are removed. What to do with each
//! assignment set is decided by plan.rs; this file does it.

mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::{
    AssignmentsRequest, Task, TaskState, TaskStatus, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use tokio::sync::{mpsc, oneshot};

use crate::dataplane::DataPlane;
use crate::runtime::files::{FileData, TaskFile};
use crate::runtime::{Existing, Runtime, RuntimeError, container_spec};
use crate::session::SessionStatus;

/// The managers the session knows now, or the configured ones.
#[derive(Clone)]
pub struct Managers {
    pub initial: Vec<String>,
    pub session: Arc<Mutex<SessionStatus>>,
}

/// A task's workload ID on the runtime, set once its controller started it.
pub type RuntimeId = Arc<Mutex<Option<String>>>;
/// The tasks this node runs, for `service logs`.
pub type Workloads = Arc<Mutex<HashMap<String, RuntimeId>>>;

impl Managers {
    pub fn current(&self) -> Vec<String> {
        let known = self.session.lock().expect("poisoned").managers.clone();
        if known.is_empty() {
            self.initial.clone()
        } else {
            known
        }
    }
}

const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping task keeps running after its endpoints are withdrawn: gossip and
/// the other nodes' load balancers follow within milliseconds; requests under way finish.
const DRAIN: Duration = Duration::from_secs(2);
/// How long a started task may take to listen on its published TCP ports before it is
/// published anyway (a task that never listens there would otherwise never serve).
const LISTEN_WAIT: Duration = Duration::from_secs(10);

pub struct ExecutorConfig {
    pub node_id: String,
    pub tls: LiveTls,
    /// Managers to reach until the session learns the current list.
    pub managers: Vec<String>,
    pub session: Arc<Mutex<SessionStatus>>,
    pub runtime: Arc<dyn Runtime>,
    /// The data plane (overlay driver, DNS, balancer); None when it could not start
    /// (tasks on networks then fail).
    pub data_plane: Option<Arc<DataPlane>>,
}

struct Local {
    stop: Option<oneshot::Sender<()>>,
    runtime_id: RuntimeId,
    /// A network attachment: nothing of the runtime's to remove.
    attachment: bool,
}

pub async fn run(cfg: ExecutorConfig) {
    let managers = Managers {
        initial: cfg.managers.clone(),
        session: cfg.session.clone(),
    };
    let reporter = Reporter::spawn(cfg.node_id.clone(), cfg.tls.clone(), managers.clone());
    let workloads = Workloads::default();
    tokio::spawn(crate::logs::serve(
        cfg.tls.clone(),
        managers.clone(),
        cfg.runtime.clone(),
        workloads.clone(),
    ));
    let mut local: HashMap<String, Local> = HashMap::new();
    let mut existing: HashMap<String, Existing> = match cfg.runtime.existing().await {
        Ok(list) => list.into_iter().map(|e| (e.task_id.clone(), e)).collect(),
        Err(e) => {
            tracing::warn!("listing existing workloads: {e}");
            HashMap::new()
        }
    };
    let mut attempt = 0usize;
    loop {
        let list = managers.current();
        let Some(addr) = list.get(attempt % list.len().max(1)).cloned() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        attempt += 1;
        let Ok(channel) = cfg.tls.channel(&addr) else {
            continue;
        };
        let mut stream = match DispatcherClient::new(channel)
            .assignments(AssignmentsRequest {
                node_id: cfg.node_id.clone(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                tracing::debug!("assignments from {addr}: {}", s.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(set)) => {
                    if let Some(o) = &cfg.data_plane {
                        o.set_assignments(&set).await;
                    }
                    // The data of this node's tasks' secrets and configs: in memory only,
                    // and only until the tasks that start now have their files.
                    let file_data = FileData::from_assignments(&set);
                    reconcile(
                        &cfg,
                        &reporter,
                        &mut local,
                        &mut existing,
                        &file_data,
                        set.tasks,
                    )
                    .await;
                    *workloads.lock().expect("poisoned") = local
                        .iter()
                        .map(|(id, l)| (id.clone(), l.runtime_id.clone()))
                        .collect();
                }
                Ok(None) => break,
                Err(s) => {
                    tracing::debug!("assignment stream from {addr} ended: {}", s.message());
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn reconcile(
    cfg: &ExecutorConfig,
    reporter: &Reporter,
    local: &mut HashMap<String, Local>,
    existing: &mut HashMap<String, Existing>,
    file_data: &FileData,
    tasks: Vec<Task>,
) {
    let running: HashSet<String> = local.keys().cloned().collect();
    let found: HashSet<String> = existing.keys().cloned().collect();
    let work = plan::plan(&tasks, &running, &found);
    let by_id: HashMap<&str, &Task> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    for id in &work.start {
        let t = by_id[id.as_str()];
        let runtime_id = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = oneshot::channel();
        let attachment = t.attached_container().is_some();
        if attachment {
            tokio::spawn(connect(
                t.clone(),
                cfg.runtime.clone(),
                reporter.clone(),
                stop_rx,
                cfg.data_plane.clone(),
            ));
        } else {
            tokio::spawn(control(
                t.clone(),
                file_data.for_task(t),
                cfg.runtime.clone(),
                reporter.clone(),
                stop_rx,
                existing.remove(id),
                runtime_id.clone(),
                cfg.data_plane.clone(),
            ));
        }
        local.insert(
            id.clone(),
            Local {
                stop: Some(stop_tx),
                runtime_id,
                attachment,
            },
        );
    }
    for id in &work.stop {
        if let Some(stop) = local.get_mut(id).and_then(|l| l.stop.take()) {
            let _ = stop.send(());
        }
    }
    for id in &work.retract {
        // Never started here (or adopted and no longer wanted): withdraw what an
        // earlier life of the agent published, let it drain, remove it, say so.
        let (data_plane, runtime, reporter) = (
            cfg.data_plane.clone(),
            cfg.runtime.clone(),
            reporter.clone(),
        );
        let (task, workload) = (by_id[id.as_str()].clone(), existing.remove(id));
        tokio::spawn(async move {
            if let Some(o) = &data_plane {
                o.retract(&task);
            }
            if let Some(e) = workload {
                if data_plane.is_some() && !task.networks.is_empty() {
                    tokio::time::sleep(DRAIN).await;
                }
                let _ = runtime.remove(&e.runtime_id).await;
            }
            reporter.report(&task.id, status(TaskState::Shutdown, "shutdown", ""));
        });
    }
    for id in work.forget {
        let mut l = local.remove(&id).expect("listed");
        if let Some(stop) = l.stop.take() {
            let _ = stop.send(());
        }
        if l.attachment {
            continue;
        }
        let runtime = cfg.runtime.clone();
        let rid = l.runtime_id.clone();
        tokio::spawn(async move {
            // Give a stopping controller its grace period before removing underneath it.
            for _ in 0..100 {
                if rid.lock().expect("poisoned").is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let id = rid.lock().expect("poisoned").clone();
            if let Some(id) = id
                && let Err(e) = runtime.remove(&id).await
            {
                tracing::warn!("removing {id}: {e}");
            }
        });
    }
    for task_id in work.orphans {
        if let Some(e) = existing.remove(&task_id) {
            tracing::info!(task = %task_id, "removing a workload whose task is gone");
            let _ = cfg.runtime.remove(&e.runtime_id).await;
        }
    }
    // Workloads of listed tasks not started this time are known now; none is adopted
    // later from this start-up list.
    existing.clear();
}

fn status(state: TaskState, message: &str, err: &str) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: message.to_string(),
        err: err.to_string(),
        timestamp_unix_nanos: shoal_proto::now_nanos(),
        ..Default::default()
    }
}

/// Drives one task on the runtime.
#[allow(clippy::too_many_arguments)] // each is a separate concern the caller owns
async fn control(
    task: Task,
    files: Result<Vec<TaskFile>, RuntimeError>,
    runtime: Arc<dyn Runtime>,
    reporter: Reporter,
    mut stop: oneshot::Receiver<()>,
    adopted: Option<Existing>,
    runtime_id: Arc<Mutex<Option<String>>>,
    data_plane: Option<Arc<DataPlane>>,
) {
    let id = task.id.clone();
    let c = container_spec(&task);
    let grace = if c.stop_grace_period_nanos > 0 {
        Duration::from_nanos(c.stop_grace_period_nanos as u64)
    } else {
        DEFAULT_STOP_GRACE
    };
    let rid = match adopted {
        Some(e) if e.running => {
            tracing::info!(task = %id, "adopted a running workload");
            e.runtime_id
        }
        other => {
            if let Some(stale) = other {
                let _ = runtime.remove(&stale.runtime_id).await;
            }
            reporter.report(&id, status(TaskState::Accepted, "accepted", ""));
            reporter.report(&id, status(TaskState::Preparing, "preparing", ""));
            if let Err(e) = runtime.prepare(&task).await {
                reporter.report(&id, status(TaskState::Rejected, "rejected", &e.to_string()));
                return;
            }
            if stop.try_recv().is_ok() {
                reporter.report(&id, status(TaskState::Shutdown, "shutdown", ""));
                return;
            }
            let files = match files {
                Ok(f) => f,
                Err(e) => {
                    reporter.report(&id, status(TaskState::Rejected, "rejected", &e.to_string()));
                    return;
                }
            };
            reporter.report(&id, status(TaskState::Starting, "starting", ""));
            match runtime.start(&task, &files).await {
                Ok(rid) => rid,
                Err(e) => {
                    let state = if matches!(e, RuntimeError::Rejected(_)) {
                        TaskState::Rejected
                    } else {
                        TaskState::Failed
                    };
                    reporter.report(&id, status(state, "starting failed", &e.to_string()));
                    return;
                }
            }
        }
    };
    *runtime_id.lock().expect("poisoned") = Some(rid.clone());
    if let Err(e) = attach_networks(&task, &runtime, &rid, data_plane.as_deref()).await {
        // A task that exits at once takes its namespace along: say so, not the symptom.
        let e = match tokio::time::timeout(Duration::from_millis(300), runtime.wait(&rid)).await {
            Ok(Ok(code)) => {
                format!("the task exited (status {code}) while its networks were being attached")
            }
            _ => e,
        };
        let _ = runtime.stop(&rid, &c.stop_signal, grace).await;
        let mut st = status(TaskState::Failed, "starting failed", &e);
        st.container_id = rid;
        reporter.report(&id, st);
        if let Some(o) = &data_plane {
            o.detach(&id).await;
        }
        return;
    }
    // Reachable by name and from other nodes once it runs, and is healthy where it has
    // a healthcheck.
    let health = runtime.health(&rid).await;
    if let Some(o) = &data_plane
        && matches!(health.as_deref(), None | Some("healthy"))
    {
        // Connections come once the task listens on its published ports.
        o.wait_listening(&task, LISTEN_WAIT).await;
        o.set_serving(&id, true).await;
    }
    let mut running = status(TaskState::Running, "started", "");
    running.container_id = rid.clone();
    reporter.report(&id, running);
    tokio::select! {
        unhealthy = watch_health(&runtime, &rid, &id, &reporter, data_plane.as_deref()) => {
            // As in Swarm: an unhealthy task is stopped and counts as failed.
            let _ = runtime.stop(&rid, &c.stop_signal, grace).await;
            let mut st = status(TaskState::Failed, "started", &unhealthy);
            st.container_id = rid;
            st.health = "unhealthy".into();
            reporter.report(&id, st);
        }
        exit = runtime.wait(&rid) => {
            let mut st = match &exit {
                Ok(0) => status(TaskState::Complete, "finished", ""),
                Ok(code) => status(TaskState::Failed, "started", &format!("task: non-zero exit ({code})")),
                Err(e) => status(TaskState::Failed, "started", &e.to_string()),
            };
            st.exit_code = exit.as_ref().copied().unwrap_or(-1) as i32;
            st.container_id = rid;
            reporter.report(&id, st);
        }
        _ = &mut stop => {
            // Drain: every node's load balancer and resolver stop sending new
            // connections here before the task stops, so updates drop no requests.
            if let Some(o) = &data_plane
                && o.set_serving(&id, false).await
            {
                tokio::time::sleep(DRAIN).await;
            }
            if let Err(e) = runtime.stop(&rid, &c.stop_signal, grace).await {
                tracing::warn!(task = %id, "stopping: {e}");
            }
            let mut st = status(TaskState::Shutdown, "shutdown", "");
            st.container_id = rid;
            reporter.report(&id, st);
        }
    }
    if let Some(o) = &data_plane {
        o.detach(&id).await;
    }
}

/// The network namespace of a container to connect: a named namespace
/// (/run/netns/NAME), or a container of the runtime.
pub async fn container_netns(
    runtime: &Arc<dyn Runtime>,
    container: &str,
) -> Result<std::path::PathBuf, String> {
    let named = std::path::Path::new("/run/netns").join(container);
    if !container.contains('/') && named.exists() {
        return Ok(named);
    }
    runtime.sandbox(container).await.map_err(|e| {
        format!("no such container or network namespace {container:?} on this node ({e})")
    })
}

/// Drives a network attachment: connects the container, then waits to disconnect it.
async fn connect(
    task: Task,
    runtime: Arc<dyn Runtime>,
    reporter: Reporter,
    stop: oneshot::Receiver<()>,
    data_plane: Option<Arc<DataPlane>>,
) {
    let id = task.id.clone();
    let container = task.attached_container().unwrap_or_default().to_string();
    reporter.report(&id, status(TaskState::Accepted, "accepted", ""));
    let connected = async {
        let data_plane = data_plane
            .as_ref()
            .ok_or("the node's network driver is not running")?;
        let netns = container_netns(&runtime, &container).await?;
        data_plane
            .attach(&task, &netns, &container)
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = connected.await {
        tracing::warn!(task = %id, %container, "connecting: {e}");
        reporter.report(&id, status(TaskState::Rejected, "connecting failed", &e));
        return;
    }
    if let Some(o) = &data_plane {
        o.set_serving(&id, true).await;
    }
    let mut running = status(TaskState::Running, "connected", "");
    running.container_id = container;
    reporter.report(&id, running);
    let _ = stop.await;
    if let Some(o) = &data_plane {
        o.detach(&id).await;
    }
    reporter.report(&id, status(TaskState::Shutdown, "disconnected", ""));
}

/// Plumbs a started task into its networks and the gateway bridge. The error is the text
/// the task's status shows (`service ps`), whichever layer it came from.
async fn attach_networks(
    task: &Task,
    runtime: &Arc<dyn Runtime>,
    rid: &str,
    data_plane: Option<&DataPlane>,
) -> Result<(), String> {
    let data_plane = match data_plane {
        Some(o) => o,
        // Without the driver a task without networks still runs, unconnected.
        None if task.networks.is_empty() => return Ok(()),
        None => {
            return Err("the node's network driver is not running (see the daemon's log)".into());
        }
    };
    let netns = runtime.sandbox(rid).await.map_err(|e| e.to_string())?;
    data_plane
        .attach(task, &netns, &runtime.hostname(task, rid))
        .await
        .map_err(|e| e.to_string())
}

/// Reports healthcheck changes while the task runs, publishing the task's endpoints only
/// while it is healthy; returns once it turns unhealthy.
async fn watch_health(
    runtime: &Arc<dyn Runtime>,
    rid: &str,
    task_id: &str,
    reporter: &Reporter,
    data_plane: Option<&DataPlane>,
) -> String {
    let mut last: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let health = runtime.health(rid).await;
        if let Some(o) = data_plane
            && health != last
            && health.is_some()
        {
            o.set_serving(task_id, health.as_deref() == Some("healthy"))
                .await;
        }
        if health.as_deref() == Some("unhealthy") {
            return "task: unhealthy container".into();
        }
        if health.is_some() && health != last {
            let mut st = status(TaskState::Running, "started", "");
            st.container_id = rid.to_string();
            st.health = health.clone().unwrap_or_default();
            reporter.report(task_id, st);
            last = health;
        }
    }
}

/// Sends status changes to a manager, batched, retrying until one accepts them.
#[derive(Clone)]
struct Reporter {
    tx: mpsc::UnboundedSender<TaskStatusUpdate>,
}

impl Reporter {
    fn spawn(node_id: String, tls: LiveTls, managers: Managers) -> Reporter {
        let (tx, mut rx) = mpsc::unbounded_channel::<TaskStatusUpdate>();
        tokio::spawn(async move {
            let mut pending: Vec<TaskStatusUpdate> = Vec::new();
            let mut attempt = 0usize;
            loop {
                if pending.is_empty() {
                    match rx.recv().await {
                        Some(u) => pending.push(u),
                        None => return,
                    }
                }
                while let Ok(u) = rx.try_recv() {
                    pending.push(u);
                }
                let list = managers.current();
                let Some(addr) = list.get(attempt % list.len().max(1)).cloned() else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                let sent = match tls.channel(&addr) {
                    Ok(ch) => DispatcherClient::new(ch)
                        .update_task_status(UpdateTaskStatusRequest {
                            node_id: node_id.clone(),
                            updates: pending.clone(),
                        })
                        .await
                        .map_err(|s| s.message().to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match sent {
                    Ok(_) => pending.clear(),
                    Err(e) => {
                        tracing::debug!("reporting task status to {addr}: {e}");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        });
        Reporter { tx }
    }

    fn report(&self, task_id: &str, status: TaskStatus) {
        let _ = self.tx.send(TaskStatusUpdate {
            task_id: task_id.to_string(),
            status: Some(status),
        });
    }
}

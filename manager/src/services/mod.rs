//! Services as users change them: create, update, rollback, remove, list. The orchestrator
//! and scheduler (leader duties) turn them into tasks.

pub mod constraints;
pub mod endpoint;
mod engine_settings;
pub mod validate;

use std::collections::HashMap;

use shoal_proto::service_spec::Mode;
use shoal_proto::stored_object::Object;
use shoal_proto::{
    Annotations, ListServicesResponse, ListTasksResponse, Meta, RestartPolicy, Service,
    ServiceSpec, StoreActionKind, Task, TaskState, UpdateConfig, UpdateServiceRequest, UpdateState,
    UpdateStatus,
};

use crate::error::{ManagerError, Result};
use crate::nodes::find_node;
use crate::proposer::Proposer;
use crate::state::store::{State, action};

const SECOND: i64 = 1_000_000_000;

/// Finds a service by ID, name, or unique ID prefix.
pub fn find_service(state: &State, key: &str) -> Result<Service> {
    crate::lookup::find_by(
        state.services(),
        key,
        |s| &s.id,
        Service::name,
        format!("service {key} not found"),
    )
}

/// Docker's defaults for whatever the spec leaves out.
fn apply_defaults(spec: &mut ServiceSpec) {
    let job = spec.is_job();
    let task = spec.task.get_or_insert_default();
    let restart = task.restart.get_or_insert(RestartPolicy {
        delay_nanos: 5 * SECOND,
        ..Default::default()
    });
    // A job's tasks run to completion: only a failure restarts one, as the docker CLI
    // sets it for jobs.
    if job && restart.condition() == shoal_proto::RestartCondition::Any {
        restart.condition = shoal_proto::RestartCondition::OnFailure as i32;
    }
    if let Some(Mode::ReplicatedJob(j)) = spec.mode.as_mut() {
        j.max_concurrent = j.max_concurrent.max(1);
        j.total_completions = j.total_completions.max(1);
    }
    let update_default = UpdateConfig {
        parallelism: 1,
        monitor_nanos: 5 * SECOND,
        ..Default::default()
    };
    spec.update.get_or_insert(update_default);
    spec.rollback.get_or_insert(update_default);
    spec.annotations.get_or_insert_with(Annotations::default);
}

pub async fn create(m: &impl Proposer, mut spec: ServiceSpec) -> Result<Service> {
    validate::validate(&spec).map_err(ManagerError::InvalidArgument)?;
    apply_defaults(&mut spec);
    m.store().view(|s| resolve(s, &mut spec))?;
    let id = shoal_proto::ids::new_id();
    let result = m
        .update_with_retry(|s| {
            let endpoint =
                endpoint::allocate(s, &id, &spec, None).map_err(ManagerError::InvalidArgument)?;
            let now = shoal_proto::now_nanos();
            let service = Service {
                id: id.clone(),
                meta: Some(Meta {
                    created_at_unix_nanos: now,
                    updated_at_unix_nanos: now,
                    ..Default::default()
                }),
                spec: Some(spec.clone()),
                spec_version: 1,
                endpoint: Some(endpoint),
                job_iteration: u64::from(spec.is_job()),
                job_last_execution_unix_nanos: if spec.is_job() { now } else { 0 },
                ..Default::default()
            };
            Ok(vec![action(
                StoreActionKind::Create,
                Object::Service(service),
            )])
        })
        .await?;
    stored_service(result)
}

/// The spec's networks, secrets and configs as the store knows them (IDs), or why not.
fn resolve(state: &State, spec: &mut ServiceSpec) -> Result<()> {
    let task = spec.task.get_or_insert_default();
    crate::networks::resolve_attachments(state, task)?;
    crate::secrets::resolve_references(state, task.container.get_or_insert_default())
}

fn stored_service(result: shoal_proto::ProposalResult) -> Result<Service> {
    result
        .objects
        .into_iter()
        .find_map(|o| match o.object {
            Some(Object::Service(s)) => Some(s),
            _ => None,
        })
        .ok_or_else(|| ManagerError::Raft("the store did not return the service".into()))
}

pub async fn update(m: &impl Proposer, req: UpdateServiceRequest) -> Result<Service> {
    let current = m.store().view(|s| find_service(s, &req.id_or_name))?;
    let version = current
        .meta
        .and_then(|m| m.version)
        .map(|v| v.index)
        .unwrap_or_default();
    if req.version != 0 && req.version != version {
        return Err(ManagerError::Rejected(
            shoal_proto::Refusal::OutOfSequence,
            format!(
                "update out of sequence: service {} is at version {version}, the update was made against version {}; inspect it again and retry",
                current.name(),
                req.version
            ),
        ));
    }
    let mut spec = if req.rollback {
        current.previous_spec.clone().ok_or_else(|| {
            ManagerError::FailedPrecondition(format!(
                "service {} does not have a previous spec",
                current.name()
            ))
        })?
    } else {
        req.spec
            .clone()
            .ok_or_else(|| ManagerError::InvalidArgument("the update carries no spec".into()))?
    };
    validate::validate(&spec).map_err(ManagerError::InvalidArgument)?;
    apply_defaults(&mut spec);
    m.store().view(|s| resolve(s, &mut spec))?;
    let old_spec = current.spec.clone().unwrap_or_default();
    let kind = |s: &ServiceSpec| s.mode.as_ref().map(std::mem::discriminant);
    if kind(&spec) != kind(&old_spec) {
        return Err(ManagerError::InvalidArgument(
            "service mode change is not allowed: remove the service and create it in the new mode"
                .into(),
        ));
    }
    if annotations_name(&spec) != annotations_name(&old_spec) {
        return Err(ManagerError::InvalidArgument(
            "renaming services is not supported".into(),
        ));
    }
    let id = current.id.clone();
    let result = m
        .update_with_retry(|s| {
            let mut svc = find_service(s, &id)?;
            let old = svc.spec.clone().unwrap_or_default();
            let endpoint = if req.rollback {
                svc.previous_endpoint.clone().unwrap_or_default()
            } else {
                endpoint::allocate(s, &id, &spec, svc.endpoint.as_ref())
                    .map_err(ManagerError::InvalidArgument)?
            };
            let tasks_change = old.task != spec.task || svc.endpoint.as_ref() != Some(&endpoint);
            svc.previous_spec = Some(old);
            svc.previous_endpoint = svc.endpoint.replace(endpoint);
            svc.spec = Some(spec.clone());
            let now = shoal_proto::now_nanos();
            svc.meta.get_or_insert_default().updated_at_unix_nanos = now;
            if tasks_change && spec.is_job() {
                // A job is not rolled: it runs again, as a new iteration.
                svc.spec_version += 1;
                svc.job_iteration += 1;
                svc.job_last_execution_unix_nanos = now;
            } else if tasks_change {
                svc.spec_version += 1;
                svc.update_status = Some(UpdateStatus {
                    state: if req.rollback {
                        UpdateState::RollbackStarted
                    } else {
                        UpdateState::Updating
                    } as i32,
                    started_at_unix_nanos: now,
                    completed_at_unix_nanos: 0,
                    message: if req.rollback {
                        "manually requested rollback"
                    } else {
                        "update in progress"
                    }
                    .into(),
                });
            }
            Ok(vec![action(StoreActionKind::Update, Object::Service(svc))])
        })
        .await?;
    stored_service(result)
}

fn annotations_name(spec: &ServiceSpec) -> &str {
    spec.annotations.as_ref().map_or("", |a| a.name.as_str())
}

/// Removes the service; its tasks are told to shut down and are deleted once they have.
pub async fn remove(m: &impl Proposer, key: &str) -> Result<()> {
    let id = m.store().view(|s| find_service(s, key))?.id;
    m.update_with_retry(|s| {
        let svc = find_service(s, &id)?;
        let mut actions = vec![action(StoreActionKind::Remove, Object::Service(svc))];
        for t in s
            .tasks()
            .filter(|t| t.service_id == id && t.desired_state() <= TaskState::Running)
        {
            let mut t = t.clone();
            t.desired_state = TaskState::Shutdown as i32;
            actions.push(action(StoreActionKind::Update, Object::Task(t)));
        }
        Ok(actions)
    })
    .await
    .map(|_| ())
}

pub fn list(m: &impl Proposer) -> ListServicesResponse {
    m.store().view(|s| {
        let mut services: Vec<Service> = s.services().cloned().collect();
        services.sort_by(|a, b| a.name().cmp(b.name()));
        // One pass over the tasks: each service's, for the counts below.
        let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
        for t in s.tasks() {
            by_service.entry(t.service_id.as_str()).or_default().push(t);
        }
        let (mut running, mut desired, mut completed) =
            (HashMap::new(), HashMap::new(), HashMap::new());
        for svc in &services {
            let tasks = by_service.remove(svc.id.as_str()).unwrap_or_default();
            let mode = svc.spec.as_ref().and_then(|s| s.mode.as_ref());
            let (r, d) = if let Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)) = mode {
                let (r, d, c) = crate::jobs::progress(svc, &tasks);
                completed.insert(svc.id.clone(), c);
                (r, d)
            } else {
                let wanted = tasks
                    .iter()
                    .filter(|t| t.desired_state() == TaskState::Running);
                let r = wanted
                    .clone()
                    .filter(|t| t.current_state() == TaskState::Running)
                    .count() as u64;
                let d = match mode {
                    Some(Mode::Replicated(rep)) => rep.replicas,
                    _ => wanted.count() as u64,
                };
                (r, d)
            };
            running.insert(svc.id.clone(), r);
            desired.insert(svc.id.clone(), d);
        }
        ListServicesResponse {
            services,
            running,
            desired,
            completed,
        }
    })
}

pub fn get(m: &impl Proposer, key: &str) -> Result<Service> {
    m.store().view(|s| find_service(s, key))
}

pub fn tasks(m: &impl Proposer, service: &str, node: &str) -> Result<ListTasksResponse> {
    m.store().view(|s| {
        let service_id = if service.is_empty() {
            None
        } else {
            Some(find_service(s, service)?.id)
        };
        let node_id = if node.is_empty() {
            None
        } else {
            Some(find_node(s, node)?.id)
        };
        let mut tasks: Vec<Task> = s
            .tasks()
            .filter(|t| service_id.as_ref().is_none_or(|id| &t.service_id == id))
            .filter(|t| node_id.as_ref().is_none_or(|id| &t.node_id == id))
            .cloned()
            .collect();
        // By slot (global services: by node), newest first, as `docker service ps` lists.
        let key = |t: &Task| {
            let node = if t.slot == 0 {
                t.node_id.clone()
            } else {
                String::new()
            };
            (
                t.service_name.clone(),
                t.slot,
                node,
                std::cmp::Reverse(created(t)),
            )
        };
        tasks.sort_by_key(key);
        let node_names = s
            .nodes()
            .map(|n| (n.id.clone(), n.hostname().to_string()))
            .collect();
        Ok(ListTasksResponse { tasks, node_names })
    })
}

fn created(t: &Task) -> i64 {
    t.meta
        .as_ref()
        .map(|m| m.created_at_unix_nanos)
        .unwrap_or_default()
}

#[cfg(test)]
mod operation_tests;

//! Tasks: how one is made, and what its state says. Shared by the orchestrators, the
//! updater, the scheduler, the allocator and the dispatcher, so none of them reaches
//! into another for it.

use shoal_proto::stored_object::Object;
use shoal_proto::{
    Meta, Service, StoreAction, StoreActionKind, Task, TaskSpec, TaskState, TaskStatus,
};

use crate::state::store::action;

pub fn status_time(t: &Task) -> i64 {
    t.status
        .as_ref()
        .map(|s| s.timestamp_unix_nanos)
        .unwrap_or_default()
}

pub fn created(t: &Task) -> i64 {
    t.meta
        .as_ref()
        .map(|m| m.created_at_unix_nanos)
        .unwrap_or_default()
}

pub fn new_task(service: &Service, slot: u64, node_id: &str, now: i64) -> Task {
    Task {
        service_id: service.id.clone(),
        slot,
        spec_version: service.spec_version,
        service_name: service.name().to_string(),
        endpoint: service.endpoint.clone(),
        job_iteration: service.job_iteration,
        ..created_task(
            node_id,
            service.spec.as_ref().and_then(|s| s.task.clone()),
            now,
        )
    }
}

/// A new task, wanted running, not yet allocated or scheduled.
pub fn created_task(node_id: &str, spec: Option<TaskSpec>, now: i64) -> Task {
    Task {
        id: shoal_proto::ids::new_id(),
        meta: Some(Meta {
            created_at_unix_nanos: now,
            updated_at_unix_nanos: now,
            ..Default::default()
        }),
        node_id: node_id.to_string(),
        spec,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::New as i32,
            message: "created".into(),
            timestamp_unix_nanos: now,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Marks `task` pending with `err`, the reason a user reads in `service ps`; None when it
/// already says so (nothing to write).
pub fn pending(mut task: Task, message: &str, err: String, now: i64) -> Option<StoreAction> {
    let status = task.status.get_or_insert_default();
    if status.state() == TaskState::Pending && status.err == err {
        return None;
    }
    status.state = TaskState::Pending as i32;
    status.message = message.to_string();
    status.err = err;
    status.timestamp_unix_nanos = now;
    Some(action(StoreActionKind::Update, Object::Task(task)))
}

/// Whether a task's agent may publish its endpoint: wanted running and not stopped. A
/// task told to stop withdraws its endpoint before it stops (its connections drain on
/// the kernel entries the agents keep a while), so it is no longer listed.
pub fn may_publish(t: &Task) -> bool {
    let state = t.status.as_ref().map(TaskStatus::state).unwrap_or_default();
    t.desired_state() <= TaskState::Running && !state.is_terminal()
}

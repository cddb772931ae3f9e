//! Jobs: tasks that run to completion. A replicated job has slots 0..total_completions
//! (numbered from 0 as swarmkit numbers them, which the docker CLI's progress expects),
//! each done once a task of the current iteration completed in it, with at most
//! max_concurrent tasks active at once; a global job has one per node that fits (nodes
//! that join later too). A completed task is told to stay complete (desired Complete):
//! it is never run again and gives back its addresses. A failed one is replaced as the
//! restart policy says. A change of the spec (`service update --force` too) starts a new
//! iteration: tasks of older ones still going are stopped.

use std::collections::BTreeMap;

use shoal_proto::stored_object::Object;
use shoal_proto::{ReplicatedJob, Service, StoreAction, StoreActionKind, Task, TaskState};

use crate::orchestrator::{
    by_node, fits, node_available, node_gone_or_down, remove_left, restart_due, scale_down,
    shut_down, trim_history,
};
use crate::state::store::{State, action};
use crate::tasks::new_task;

/// Where a slot (or a node) of a job stands in the current iteration.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// Nothing there: a task may be made.
    Empty,
    /// Failed for good (the restart policy says no more): no new task.
    GivenUp,
    /// A task runs, is on its way, waits out its restart delay, or is stopping.
    Active,
    /// A task completed.
    Done,
}

/// Tends one slot's tasks: completed ones told to stay complete, failed ones replaced
/// per policy, older iterations' stopped.
fn tend(
    state: &State,
    service: &Service,
    history: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) -> Slot {
    let iteration = service.job_iteration;
    let current: Vec<&Task> = history
        .iter()
        .copied()
        .filter(|t| t.job_iteration == iteration)
        .collect();
    let mut slot = Slot::Empty;
    for t in history {
        let (desired, st) = (t.desired_state(), t.current_state());
        let here = if t.job_iteration != iteration {
            if desired == TaskState::Running {
                actions.push(shut_down(
                    (*t).clone(),
                    "a newer run of the job replaces it",
                ));
            }
            continue;
        } else if desired == TaskState::Complete {
            Slot::Done
        } else if desired == TaskState::Running && st == TaskState::Complete {
            let mut done = (*t).clone();
            done.desired_state = TaskState::Complete as i32;
            actions.push(action(StoreActionKind::Update, Object::Task(done)));
            Slot::Done
        } else if desired == TaskState::Running && st.is_terminal() {
            match restart_due(service, t, &current, now) {
                Some(true) => {
                    actions.push(shut_down((*t).clone(), ""));
                    Slot::Empty
                }
                None => Slot::Active,
                Some(false) => Slot::GivenUp,
            }
        } else if desired == TaskState::Running {
            if !t.node_id.is_empty() && node_gone_or_down(state, &t.node_id) {
                actions.push(shut_down((*t).clone(), "node is down: task rescheduled"));
                Slot::Empty
            } else {
                Slot::Active
            }
        } else if !st.is_terminal() && !node_gone_or_down(state, &t.node_id) {
            // Stopping: the next one waits for it.
            Slot::Active
        } else {
            Slot::Empty
        };
        slot = slot.max(here);
    }
    slot
}

pub fn plan_replicated(
    state: &State,
    service: &Service,
    job: ReplicatedJob,
    tasks: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) {
    let total = job.total_completions.max(1);
    let most = job.max_concurrent.max(1);
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }
    let mut empty = Vec::new();
    let mut active = 0;
    for slot in 0..total {
        let history = slots.remove(&slot).unwrap_or_default();
        match tend(state, service, &history, now, actions) {
            Slot::Empty => empty.push(slot),
            Slot::Active => active += 1,
            Slot::GivenUp | Slot::Done => {}
        }
        trim_history(state, &history, actions);
    }
    for slot in empty {
        if active >= most {
            break;
        }
        active += 1;
        actions.push(action(
            StoreActionKind::Create,
            Object::Task(new_task(service, slot, "", now)),
        ));
    }
    // Slots beyond the total (fewer completions asked for).
    scale_down(state, slots, "job scaled down", actions);
}

pub fn plan_global(
    state: &State,
    service: &Service,
    tasks: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) {
    let fits = fits(service);
    let mut per_node = by_node(tasks);
    for node in state.nodes() {
        let history = per_node.remove(node.id.as_str()).unwrap_or_default();
        let slot = tend(state, service, &history, now, actions);
        if fits(node) && slot == Slot::Empty && node_available(node) {
            actions.push(action(
                StoreActionKind::Create,
                Object::Task(new_task(service, 0, &node.id, now)),
            ));
        }
        trim_history(state, &history, actions);
    }
    remove_left(per_node, actions);
}

/// A job's progress for `service ls`: (running, desired now, completed) in the
/// current iteration, as swarmkit counts them: a replicated job desires as many as may
/// run at once of those left; a global job the tasks not yet complete (so the docker CLI
/// shows completed out of desired + completed).
pub fn progress(service: &Service, tasks: &[&Task]) -> (u64, u64, u64) {
    let current = tasks
        .iter()
        .filter(|t| t.job_iteration == service.job_iteration);
    let (mut running, mut completed, mut pending) = (0, 0, 0);
    for t in current {
        if t.current_state() == TaskState::Complete {
            completed += 1;
        } else if t.desired_state() == TaskState::Running {
            pending += 1;
            if t.current_state() == TaskState::Running {
                running += 1;
            }
        }
    }
    let desired = match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(shoal_proto::service_spec::Mode::ReplicatedJob(j)) => j
            .max_concurrent
            .max(1)
            .min(j.total_completions.max(1).saturating_sub(completed)),
        _ => pending,
    };
    (running, desired, completed)
}

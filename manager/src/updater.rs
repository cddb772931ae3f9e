//! Rolling updates and rollbacks. While a service's update is in progress, slots whose
//! task runs an older spec are replaced in batches of `parallelism`: a batch starts once
//! the previous one runs and `delay` has passed. A new task that fails counts against
//! `max_failure_ratio`; past it, `failure_action` pauses, continues, or rolls back to the
//! previous spec. Everything is derived from the store, so a new leader carries on.

use std::collections::HashSet;

use shoal_proto::stored_object::Object;
use shoal_proto::{
    Service, StoreAction, StoreActionKind, Task, TaskState, UpdateFailureAction, UpdateOrder,
    UpdateState, UpdateStatus,
};

use crate::state::store::action;
use crate::tasks::new_task;

fn acted_on(actions: &[StoreAction]) -> HashSet<String> {
    actions
        .iter()
        .filter_map(
            |a| match a.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Task(t)) => Some(t.id.clone()),
                _ => None,
            },
        )
        .collect()
}

fn set_status(service: &Service, state: UpdateState, message: String, now: i64) -> StoreAction {
    let mut svc = service.clone();
    let st = svc.update_status.get_or_insert_with(UpdateStatus::default);
    st.state = state as i32;
    st.message = message;
    if matches!(
        state,
        UpdateState::Completed | UpdateState::RollbackCompleted
    ) {
        st.completed_at_unix_nanos = now;
    }
    action(StoreActionKind::Update, Object::Service(svc))
}

/// Plans the next step of `service`'s update. `slots` holds each slot's tasks (for global
/// services, each node's); `slot_key` gives a replacement task's slot and node.
pub fn plan(service: &Service, slots: &[Vec<&Task>], now: i64, actions: &mut Vec<StoreAction>) {
    let status = service.update_status.clone().unwrap_or_default();
    let rolling_back = match status.state() {
        UpdateState::Updating => false,
        UpdateState::RollbackStarted => true,
        _ => return,
    };
    let spec = service.spec.clone().unwrap_or_default();
    let cfg = if rolling_back {
        spec.rollback
    } else {
        spec.update
    }
    .unwrap_or_default();
    let want = spec.task.clone();
    let touched = acted_on(actions);
    // Swarm's "dirty task": another task spec, or another endpoint (ports, VIPs).
    let current = |t: &Task| t.spec == want && t.endpoint == service.endpoint;

    // Start-first: once a slot's new task runs, its old one stops.
    for history in slots {
        let fresh_running = history.iter().any(|t| {
            current(t)
                && t.desired_state() == TaskState::Running
                && t.current_state() == TaskState::Running
        });
        if fresh_running {
            for t in history.iter().filter(|t| {
                !current(t) && t.desired_state() == TaskState::Running && !touched.contains(&t.id)
            }) {
                let mut old = (*t).clone();
                old.desired_state = TaskState::Shutdown as i32;
                actions.push(action(StoreActionKind::Update, Object::Task(old)));
            }
        }
    }

    let fresh = |t: &&&Task| {
        current(t)
            && t.meta
                .as_ref()
                .map(|m| m.created_at_unix_nanos)
                .unwrap_or_default()
                >= status.started_at_unix_nanos
    };
    let failures: Vec<&Task> = slots
        .iter()
        .flat_map(|h| {
            h.iter()
                .filter(fresh)
                .filter(|t| matches!(t.current_state(), TaskState::Failed | TaskState::Rejected))
        })
        .copied()
        .collect();
    if let Some(first) = failures.first()
        && failures.len() as f32 / slots.len().max(1) as f32 > cfg.max_failure_ratio
    {
        let why = format!("failure or early termination of task {}", first.id);
        match (cfg.failure_action(), rolling_back) {
            (UpdateFailureAction::Continue, _) => {}
            (UpdateFailureAction::Rollback, false) => {
                let mut svc = service.clone();
                let previous = svc.previous_spec.take().unwrap_or_else(|| spec.clone());
                svc.previous_spec = Some(spec.clone());
                svc.spec = Some(previous);
                if let Some(endpoint) = svc.previous_endpoint.take() {
                    svc.previous_endpoint = svc.endpoint.replace(endpoint);
                }
                svc.spec_version += 1;
                svc.update_status = Some(UpdateStatus {
                    state: UpdateState::RollbackStarted as i32,
                    started_at_unix_nanos: now,
                    completed_at_unix_nanos: 0,
                    message: format!("update rolled back due to {why}"),
                });
                actions.push(action(StoreActionKind::Update, Object::Service(svc)));
                return;
            }
            (_, false) => {
                actions.push(set_status(
                    service,
                    UpdateState::Paused,
                    format!("update paused due to {why}"),
                    now,
                ));
                return;
            }
            (_, true) => {
                actions.push(set_status(
                    service,
                    UpdateState::RollbackPaused,
                    format!("rollback paused due to {why}"),
                    now,
                ));
                return;
            }
        }
    }

    let mut dirty: Vec<&Task> = Vec::new();
    let mut in_flight = 0usize;
    let mut last_started = 0i64;
    for history in slots {
        let live: Vec<&&Task> = history
            .iter()
            .filter(|t| t.desired_state() == TaskState::Running)
            .collect();
        if live.is_empty() {
            // Between its old task stopping and its new one being created.
            in_flight += 1;
            continue;
        }
        // Done once the new task has run for the monitor period without failing.
        let done = live.iter().find(|t| {
            current(t)
                && t.current_state() == TaskState::Running
                && now
                    >= t.status
                        .as_ref()
                        .map(|s| s.timestamp_unix_nanos)
                        .unwrap_or_default()
                        + cfg.monitor_nanos
        });
        match done {
            Some(t) => {
                last_started = last_started.max(
                    t.status
                        .as_ref()
                        .map(|s| s.timestamp_unix_nanos)
                        .unwrap_or_default(),
                );
            }
            None => match live
                .iter()
                .find(|t| !current(t) && !(t.current_state()).is_terminal())
            {
                Some(old) if !live.iter().any(|t| current(t)) => dirty.push(old),
                _ => in_flight += 1,
            },
        }
    }

    if dirty.is_empty() && in_flight == 0 {
        let (state, message) = if rolling_back {
            (UpdateState::RollbackCompleted, "rollback completed")
        } else {
            (UpdateState::Completed, "update completed")
        };
        actions.push(set_status(service, state, message.into(), now));
        return;
    }
    if in_flight > 0 || now < last_started + cfg.delay_nanos {
        return;
    }
    let batch = if cfg.parallelism == 0 {
        dirty.len()
    } else {
        cfg.parallelism as usize
    };
    for old in dirty
        .into_iter()
        .filter(|t| !touched.contains(&t.id))
        .take(batch)
    {
        if cfg.order() == UpdateOrder::StartFirst {
            actions.push(action(
                StoreActionKind::Create,
                Object::Task(new_task(
                    service,
                    old.slot,
                    if old.slot == 0 { &old.node_id } else { "" },
                    now,
                )),
            ));
        } else {
            let mut t = old.clone();
            t.desired_state = TaskState::Shutdown as i32;
            t.status.get_or_insert_default().message = "shutdown for update".into();
            actions.push(action(StoreActionKind::Update, Object::Task(t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_proto::service_spec::Mode;
    use shoal_proto::*;

    use crate::state::store::{State, action, proposal};

    fn step(s: &mut State, idx: &mut u64) -> usize {
        let actions = crate::orchestrator::plan(s, now_nanos());
        let n = actions.len();
        if n > 0 {
            *idx += 1;
            let (r, _) = s.apply(*idx, &proposal(actions));
            assert!(r.error.is_empty(), "{}", r.error);
        }
        n
    }

    /// Plays the agents: wanted tasks start (or fail, for images `fails` names), unwanted
    /// ones stop; repeats until nothing changes.
    fn run_all_with(s: &mut State, idx: &mut u64, fails: impl Fn(&str) -> bool) {
        for _ in 0..50 {
            let mut changed = step(s, idx) > 0;
            let mut ups = Vec::new();
            for t in s.tasks() {
                let st = t.status.as_ref().map(TaskStatus::state).unwrap_or_default();
                let image = t
                    .spec
                    .clone()
                    .unwrap_or_default()
                    .container
                    .unwrap_or_default()
                    .image;
                let next = if t.desired_state() == TaskState::Running && st < TaskState::Running {
                    if fails(&image) {
                        TaskState::Failed
                    } else {
                        TaskState::Running
                    }
                } else if t.desired_state() == TaskState::Shutdown && st < TaskState::Complete {
                    TaskState::Shutdown
                } else {
                    continue;
                };
                let mut t = t.clone();
                t.node_id = "n1".into();
                t.status.get_or_insert_default().state = next as i32;
                ups.push(action(
                    StoreActionKind::Update,
                    stored_object::Object::Task(t),
                ));
            }
            if !ups.is_empty() {
                changed = true;
                *idx += 1;
                s.apply(*idx, &proposal(ups));
            }
            if !changed {
                return;
            }
        }
    }

    fn run_all(s: &mut State, idx: &mut u64) {
        run_all_with(s, idx, |_| false);
    }

    fn service_with(s: &mut State, idx: &mut u64, failure: UpdateFailureAction) -> ServiceSpec {
        let node = Node {
            id: "n1".into(),
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = ServiceSpec {
            annotations: Some(Annotations {
                name: "web".into(),
                ..Default::default()
            }),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "v1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(Mode::Replicated(ReplicatedService { replicas: 4 })),
            update: Some(UpdateConfig {
                parallelism: 2,
                failure_action: failure as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let svc = Service {
            id: "svc".into(),
            spec: Some(spec.clone()),
            spec_version: 1,
            ..Default::default()
        };
        *idx += 1;
        s.apply(
            *idx,
            &proposal(vec![
                action(StoreActionKind::Create, stored_object::Object::Node(node)),
                action(StoreActionKind::Create, stored_object::Object::Service(svc)),
            ]),
        );
        run_all(s, idx);
        spec
    }

    #[test]
    fn a_failing_update_rolls_back_to_the_previous_spec() {
        let mut s = State::default();
        let mut idx = 0;
        let spec = service_with(&mut s, &mut idx, UpdateFailureAction::Rollback);
        let mut svc = s.service("svc").unwrap().clone();
        let mut bad = spec.clone();
        bad.task.as_mut().unwrap().container.as_mut().unwrap().image = "broken".into();
        svc.previous_spec = Some(spec);
        svc.spec = Some(bad);
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::Updating as i32,
            ..Default::default()
        });
        idx += 1;
        s.apply(
            idx,
            &proposal(vec![action(
                StoreActionKind::Update,
                stored_object::Object::Service(svc),
            )]),
        );
        // Tasks of the broken image fail as soon as they start.
        run_all_with(&mut s, &mut idx, |image| image == "broken");
        let svc = s.service("svc").unwrap();
        let status = svc.update_status.as_ref().unwrap();
        assert_eq!(status.state(), UpdateState::RollbackCompleted, "{status:?}");
        let running: Vec<String> = s
            .tasks()
            .filter(|t| {
                t.desired_state() == TaskState::Running
                    && t.status.as_ref().unwrap().state() == TaskState::Running
            })
            .map(|t| t.spec.clone().unwrap().container.unwrap().image)
            .collect();
        assert_eq!(running, ["v1"; 4]);
        // Never more than `parallelism` slots were touched by the failed update.
        let broken = s
            .tasks()
            .filter(|t| t.spec.clone().unwrap().container.unwrap().image == "broken");
        let slots: std::collections::HashSet<u64> = broken.map(|t| t.slot).collect();
        assert!(slots.len() <= 2, "{slots:?}");
    }

    #[test]
    fn update_replaces_every_task_in_batches_then_completes() {
        let mut s = State::default();
        let mut idx = 0;
        let spec = service_with(&mut s, &mut idx, UpdateFailureAction::Pause);
        assert_eq!(
            s.tasks()
                .filter(|t| t.desired_state() == TaskState::Running)
                .count(),
            4
        );

        let mut svc = s.service("svc").unwrap().clone();
        let mut new_spec = spec.clone();
        new_spec
            .task
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap()
            .image = "v2".into();
        svc.previous_spec = Some(spec);
        svc.spec = Some(new_spec);
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::Updating as i32,
            started_at_unix_nanos: 0,
            ..Default::default()
        });
        idx += 1;
        let (r, _) = s.apply(
            idx,
            &proposal(vec![action(
                StoreActionKind::Update,
                stored_object::Object::Service(svc),
            )]),
        );
        assert!(r.error.is_empty());
        run_all(&mut s, &mut idx);
        let images: Vec<String> = s
            .tasks()
            .filter(|t| t.desired_state() == TaskState::Running)
            .map(|t| t.spec.clone().unwrap().container.unwrap().image)
            .collect();
        assert_eq!(images, ["v2"; 4]);
        assert_eq!(
            s.service("svc")
                .unwrap()
                .update_status
                .as_ref()
                .unwrap()
                .state(),
            UpdateState::Completed
        );
    }
}

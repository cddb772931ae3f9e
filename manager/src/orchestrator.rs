//! The orchestrators: compare each service's desired tasks with the tasks in the store and
//! plan the changes. Replicated services own slots 1..N; global services one task per
//! eligible node. Tasks whose node went Down or was drained are replaced, dead tasks are
//! restarted as their restart policy says, and each slot keeps a short history.
//!
//! `plan` is pure: the leader calls it with a snapshot and proposes what it returns.

use std::collections::BTreeMap;

use shoal_proto::service_spec::Mode;
use shoal_proto::stored_object::Object;
use shoal_proto::{
    Node, NodeAvailability, NodeState, RestartCondition, Service, StoreAction, StoreActionKind,
    Task, TaskState,
};

use crate::services::constraints;
use crate::state::store::{State, action};
use crate::tasks::{created, new_task, status_time};

/// The most tasks one pass creates for a service: a large scale-up becomes several
/// bounded proposals (the leader wakes again as soon as one is applied) instead of one
/// entry as large as the count.
const CREATE_BATCH: usize = 500;

/// A node that can take new tasks.
pub fn node_available(n: &Node) -> bool {
    n.status.as_ref().map(shoal_proto::NodeStatus::state) == Some(NodeState::Ready)
        && n.spec
            .as_ref()
            .map(shoal_proto::NodeSpec::availability)
            .unwrap_or_default()
            == NodeAvailability::Active
}

pub(crate) fn node_gone_or_down(state: &State, node_id: &str) -> bool {
    match state.node(node_id) {
        None => true,
        Some(n) => n.status.as_ref().map(shoal_proto::NodeStatus::state) == Some(NodeState::Down),
    }
}

fn node_drained(state: &State, node_id: &str) -> bool {
    state
        .node(node_id)
        .and_then(|n| n.spec.as_ref())
        .is_some_and(|s| s.availability() == NodeAvailability::Drain)
}

pub(crate) fn shut_down(mut t: Task, why: &str) -> StoreAction {
    t.desired_state = TaskState::Shutdown as i32;
    if !why.is_empty() && !(t.current_state()).is_terminal() {
        let status = t.status.get_or_insert_default();
        status.message = why.to_string();
    }
    action(StoreActionKind::Update, Object::Task(t))
}

/// Whether a task that ended on its own should be replaced now, per the restart policy.
/// Returns None to wait (the delay has not passed), Some(false) never, Some(true) now.
pub(crate) fn restart_due(
    service: &Service,
    dead: &Task,
    history: &[&Task],
    now: i64,
) -> Option<bool> {
    let policy = service
        .spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.restart)
        .unwrap_or_default();
    let failed = matches!(
        dead.current_state(),
        TaskState::Failed | TaskState::Rejected
    );
    let wanted = match policy.condition() {
        RestartCondition::Any => true,
        RestartCondition::OnFailure => failed,
        RestartCondition::None => false,
    };
    if !wanted {
        return Some(false);
    }
    if policy.max_attempts > 0 {
        let since = if policy.window_nanos > 0 {
            now - policy.window_nanos
        } else {
            i64::MIN
        };
        let attempts = history
            .iter()
            .filter(|t| (t.current_state()).is_terminal() && created(t) >= since)
            .count() as u64;
        // The first run is not a restart.
        if attempts > policy.max_attempts {
            return Some(false);
        }
    }
    if now - status_time(dead) < policy.delay_nanos {
        return None;
    }
    Some(true)
}

/// Plans the changes for every service; `now` is unix nanoseconds.
pub fn plan(state: &State, now: i64) -> Vec<StoreAction> {
    let mut actions = Vec::new();
    let mut by_service: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks() {
        by_service.entry(t.service_id.as_str()).or_default().push(t);
    }
    for service in state.services() {
        let tasks = by_service.remove(service.id.as_str()).unwrap_or_default();
        match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
            Some(Mode::Replicated(r)) => {
                plan_replicated(state, service, r.replicas, &tasks, now, &mut actions);
            }
            Some(Mode::Global(_)) => plan_global(state, service, &tasks, now, &mut actions),
            Some(Mode::ReplicatedJob(j)) => {
                crate::jobs::plan_replicated(state, service, *j, &tasks, now, &mut actions);
            }
            Some(Mode::GlobalJob(_)) => {
                crate::jobs::plan_global(state, service, &tasks, now, &mut actions);
            }
            None => {}
        }
    }
    // Tasks of removed services: deleted once they have stopped or cannot report.
    for (_, tasks) in by_service {
        for t in tasks {
            // Network attachments belong to no service: they go when disconnected.
            if t.attached_container().is_some() {
                // Removed once stopped (disconnected, or the container could not be
                // connected), or when its node is gone.
                if (t.current_state()).is_terminal() || node_gone_or_down(state, &t.node_id) {
                    actions.push(action(StoreActionKind::Remove, Object::Task(t.clone())));
                }
                continue;
            }
            if (t.current_state()).is_terminal()
                || t.node_id.is_empty()
                || node_gone_or_down(state, &t.node_id)
            {
                actions.push(action(StoreActionKind::Remove, Object::Task(t.clone())));
            } else if t.desired_state() < TaskState::Shutdown {
                actions.push(shut_down(t.clone(), "service removed"));
            }
        }
    }
    actions
}

/// Handles a slot's (or a global node's) tasks: replaces what must be replaced and
/// returns whether the slot still has a task that occupies it.
fn tend_slot(
    state: &State,
    service: &Service,
    history: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) -> bool {
    let mut occupied = false;
    for t in history
        .iter()
        .filter(|t| t.desired_state() == TaskState::Running)
    {
        let st = t.current_state();
        if !t.node_id.is_empty() && node_gone_or_down(state, &t.node_id) && !st.is_terminal() {
            actions.push(shut_down((*t).clone(), "node is down: task rescheduled"));
        } else if !t.node_id.is_empty() && node_drained(state, &t.node_id) {
            actions.push(shut_down((*t).clone(), "node is drained: task rescheduled"));
        } else if st.is_terminal() {
            match restart_due(service, t, history, now) {
                Some(true) => actions.push(shut_down((*t).clone(), "")),
                // Waiting out the delay, or never restarting: the dead task keeps the slot.
                None | Some(false) => occupied = true,
            }
        } else {
            occupied = true;
        }
    }
    // A task still stopping holds the slot so the new one does not start beside it.
    occupied
        || history.iter().any(|t| {
            t.desired_state() == TaskState::Shutdown
                && !(t.current_state()).is_terminal()
                && !node_gone_or_down(state, &t.node_id)
        })
}

/// Removes the oldest finished tasks of a slot (or node) beyond the swarm's task
/// history limit (the task reaper).
pub(crate) fn trim_history(state: &State, history: &[&Task], actions: &mut Vec<StoreAction>) {
    let Some(keep) = crate::swarm_settings::task_history(state) else {
        return;
    };
    let mut done: Vec<&&Task> = history.iter().filter(|t| t.is_done()).collect();
    if done.len() > keep {
        done.sort_by_key(|t| std::cmp::Reverse(created(t)));
        for t in &done[keep..] {
            actions.push(action(StoreActionKind::Remove, Object::Task((**t).clone())));
        }
    }
}

fn plan_replicated(
    state: &State,
    service: &Service,
    replicas: u64,
    tasks: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) {
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }
    let mut kept = Vec::new();
    let mut created = 0;
    for slot in 1..=replicas {
        let history = slots.remove(&slot).unwrap_or_default();
        if !tend_slot(state, service, &history, now, actions) && created < CREATE_BATCH {
            created += 1;
            actions.push(action(
                StoreActionKind::Create,
                Object::Task(new_task(service, slot, "", now)),
            ));
        }
        trim_history(state, &history, actions);
        kept.push(history);
    }
    crate::updater::plan(service, &kept, now, actions);
    scale_down(state, slots, "service scaled down", actions);
}

/// Slots beyond the count asked for: their tasks are stopped (`why`), their history
/// trimmed.
pub(crate) fn scale_down(
    state: &State,
    slots: BTreeMap<u64, Vec<&Task>>,
    why: &str,
    actions: &mut Vec<StoreAction>,
) {
    for history in slots.into_values() {
        for t in history
            .iter()
            .filter(|t| t.desired_state() == TaskState::Running)
        {
            actions.push(shut_down((*t).clone(), why));
        }
        trim_history(state, &history, actions);
    }
}

/// Whether a node fits a service's placement: its constraints and platforms.
pub(crate) fn fits(service: &Service) -> impl Fn(&Node) -> bool {
    let placement = service
        .spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.placement.clone())
        .unwrap_or_default();
    let rules = constraints::parse_all(&placement.constraints).unwrap_or_default();
    move |node| {
        rules.iter().all(|c| c.matches(node))
            && constraints::platform_matches(&placement.platforms, node)
    }
}

/// A global service's (or job's) tasks by node.
pub(crate) fn by_node<'a>(tasks: &[&'a Task]) -> BTreeMap<&'a str, Vec<&'a Task>> {
    let mut per_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        per_node.entry(t.node_id.as_str()).or_default().push(t);
    }
    per_node
}

/// The tasks left in `per_node` are on nodes removed from the swarm: they go.
pub(crate) fn remove_left(per_node: BTreeMap<&str, Vec<&Task>>, actions: &mut Vec<StoreAction>) {
    for t in per_node.into_values().flatten() {
        actions.push(action(StoreActionKind::Remove, Object::Task(t.clone())));
    }
}

fn plan_global(
    state: &State,
    service: &Service,
    tasks: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
) {
    let fits = fits(service);
    let mut per_node = by_node(tasks);
    let mut kept = Vec::new();
    for node in state.nodes() {
        let history = per_node.remove(node.id.as_str()).unwrap_or_default();
        let eligible = fits(node);
        let available = node_available(node);
        if !eligible {
            for t in history
                .iter()
                .filter(|t| t.desired_state() == TaskState::Running)
            {
                actions.push(shut_down(
                    (*t).clone(),
                    "node no longer satisfies the constraints",
                ));
            }
        } else if node.status.as_ref().map(shoal_proto::NodeStatus::state) == Some(NodeState::Down)
        {
            // A global task waits for its node to come back.
        } else if !tend_slot(state, service, &history, now, actions) && available {
            actions.push(action(
                StoreActionKind::Create,
                Object::Task(new_task(service, 0, &node.id, now)),
            ));
        }
        trim_history(state, &history, actions);
        if eligible && !history.is_empty() {
            kept.push(history);
        }
    }
    crate::updater::plan(service, &kept, now, actions);
    remove_left(per_node, actions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{
        Annotations, ContainerSpec, GlobalService, NodeDescription, NodeSpec, NodeStatus,
        ReplicatedService, RestartPolicy, ServiceSpec, TaskSpec,
    };

    fn node(id: &str, state: NodeState, availability: NodeAvailability) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                availability: availability as i32,
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: id.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(mode: Mode, restart: RestartCondition) -> Service {
        Service {
            id: "svc".into(),
            spec: Some(ServiceSpec {
                annotations: Some(Annotations {
                    name: "web".into(),
                    ..Default::default()
                }),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "img".into(),
                        ..Default::default()
                    }),
                    restart: Some(RestartPolicy {
                        condition: restart as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(mode),
                ..Default::default()
            }),
            spec_version: 1,
            ..Default::default()
        }
    }

    fn apply(state: &mut State, actions: Vec<StoreAction>, index: &mut u64) {
        *index += 1;
        let (r, _) = state.apply(*index, &crate::state::store::proposal(actions));
        assert!(r.error.is_empty(), "{}", r.error);
    }

    fn step(s: &mut State, index: &mut u64) {
        let actions = plan(s, 0);
        if !actions.is_empty() {
            apply(s, actions, index);
        }
    }

    fn state_with(nodes: Vec<Node>, svc: Service) -> (State, u64) {
        let mut s = State::default();
        let mut idx = 0;
        let mut actions: Vec<StoreAction> = nodes
            .into_iter()
            .map(|n| action(StoreActionKind::Create, Object::Node(n)))
            .collect();
        actions.push(action(StoreActionKind::Create, Object::Service(svc)));
        apply(&mut s, actions, &mut idx);
        (s, idx)
    }

    fn live(s: &State) -> Vec<Task> {
        s.tasks()
            .filter(|t| t.desired_state() == TaskState::Running)
            .cloned()
            .collect()
    }

    fn set_task_state(s: &mut State, idx: &mut u64, id: &str, st: TaskState, node: &str) {
        let mut t = s.task(id).unwrap().clone();
        t.status.get_or_insert_default().state = st as i32;
        if !node.is_empty() {
            t.node_id = node.into();
        }
        apply(
            s,
            vec![action(StoreActionKind::Update, Object::Task(t))],
            idx,
        );
    }

    #[test]
    fn a_large_scale_up_is_created_in_bounded_batches() {
        let svc = service(
            Mode::Replicated(ReplicatedService { replicas: 1_200 }),
            RestartCondition::Any,
        );
        let (mut s, mut idx) = state_with(
            vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
            svc,
        );
        let mut sizes = vec![];
        for _ in 0..4 {
            let before = s.tasks().count();
            step(&mut s, &mut idx);
            sizes.push(s.tasks().count() - before);
        }
        assert_eq!(sizes, [CREATE_BATCH, CREATE_BATCH, 200, 0]);
    }

    #[test]
    fn replicated_service_fills_and_trims_slots() {
        let svc = service(
            Mode::Replicated(ReplicatedService { replicas: 3 }),
            RestartCondition::Any,
        );
        let (mut s, mut idx) = state_with(
            vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
            svc.clone(),
        );
        step(&mut s, &mut idx);
        let mut slots: Vec<u64> = live(&s).iter().map(|t| t.slot).collect();
        slots.sort_unstable();
        assert_eq!(slots, [1, 2, 3]);
        assert!(
            plan(&s, 0).is_empty(),
            "a converged service needs no changes"
        );

        let mut smaller = svc.clone();
        smaller.spec.as_mut().unwrap().mode =
            Some(Mode::Replicated(ReplicatedService { replicas: 1 }));
        smaller.meta = s.service("svc").unwrap().meta;
        apply(
            &mut s,
            vec![action(StoreActionKind::Update, Object::Service(smaller))],
            &mut idx,
        );
        step(&mut s, &mut idx);
        assert_eq!(live(&s).iter().map(|t| t.slot).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_replicated_job_runs_its_completions_at_most_max_concurrent_at_once() {
        let mut svc = service(
            Mode::ReplicatedJob(shoal_proto::ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5,
            }),
            RestartCondition::OnFailure,
        );
        svc.job_iteration = 1;
        let (mut s, mut idx) = state_with(
            vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
            svc,
        );
        let mut completed = 0;
        for round in 0..10 {
            step(&mut s, &mut idx);
            let active = live(&s);
            assert!(active.len() <= 2, "round {round}: {} at once", active.len());
            if active.is_empty() {
                break;
            }
            // One fails the first time round; the rest complete.
            for (i, t) in active.iter().enumerate() {
                let state = if round == 0 && i == 0 {
                    TaskState::Failed
                } else {
                    completed += 1;
                    TaskState::Complete
                };
                set_task_state(&mut s, &mut idx, &t.id, state, "n1");
            }
        }
        step(&mut s, &mut idx);
        let done: Vec<&Task> = s
            .tasks()
            .filter(|t| t.current_state() == TaskState::Complete)
            .collect();
        assert_eq!((completed, done.len()), (5, 5));
        // Each slot once (numbered from 0), told to stay complete, never run again.
        let mut slots: Vec<u64> = done.iter().map(|t| t.slot).collect();
        slots.sort_unstable();
        assert_eq!(slots, [0, 1, 2, 3, 4]);
        assert!(
            done.iter()
                .all(|t| t.desired_state() == TaskState::Complete)
        );
        assert!(live(&s).is_empty());
        assert_eq!(
            s.tasks()
                .filter(|t| t.current_state() == TaskState::Failed)
                .count(),
            1,
            "the failed one was replaced, not retried in place"
        );

        // A new iteration runs it again.
        let mut svc = s.service("svc").unwrap().clone();
        svc.job_iteration = 2;
        apply(
            &mut s,
            vec![action(StoreActionKind::Update, Object::Service(svc))],
            &mut idx,
        );
        step(&mut s, &mut idx);
        let again = live(&s);
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|t| t.job_iteration == 2));
    }

    #[test]
    fn a_global_job_runs_once_on_each_node_and_on_nodes_that_come() {
        let mut svc = service(
            Mode::GlobalJob(shoal_proto::GlobalJob {}),
            RestartCondition::OnFailure,
        );
        svc.job_iteration = 1;
        let (mut s, mut idx) = state_with(
            vec![
                node("n1", NodeState::Ready, NodeAvailability::Active),
                node("n2", NodeState::Ready, NodeAvailability::Active),
            ],
            svc,
        );
        step(&mut s, &mut idx);
        for t in live(&s) {
            let node = t.node_id.clone();
            set_task_state(&mut s, &mut idx, &t.id, TaskState::Complete, &node);
        }
        step(&mut s, &mut idx);
        assert!(live(&s).is_empty(), "each ran once");
        apply(
            &mut s,
            vec![action(
                StoreActionKind::Create,
                Object::Node(node("n3", NodeState::Ready, NodeAvailability::Active)),
            )],
            &mut idx,
        );
        step(&mut s, &mut idx);
        let new: Vec<String> = live(&s).into_iter().map(|t| t.node_id).collect();
        assert_eq!(new, ["n3"]);
    }

    #[test]
    fn finished_tasks_are_kept_up_to_the_swarms_task_history_limit() {
        for (limit, kept) in [(None, 4), (Some(1), 1), (Some(-1), 4)] {
            let svc = service(
                Mode::Replicated(ReplicatedService { replicas: 1 }),
                RestartCondition::Any,
            );
            let (mut s, mut idx) = state_with(
                vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
                svc,
            );
            let cluster = shoal_proto::Cluster {
                id: "c".into(),
                spec: Some(shoal_proto::ClusterSpec {
                    orchestration: Some(shoal_proto::OrchestrationConfig {
                        task_history_retention_limit: limit,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            apply(
                &mut s,
                vec![action(StoreActionKind::Create, Object::Cluster(cluster))],
                &mut idx,
            );
            for _ in 0..4 {
                step(&mut s, &mut idx);
                let t = live(&s)[0].id.clone();
                set_task_state(&mut s, &mut idx, &t, TaskState::Failed, "n1");
                step(&mut s, &mut idx);
            }
            step(&mut s, &mut idx);
            let done = s.tasks().filter(|t| t.is_done()).count();
            assert_eq!(done, kept, "limit {limit:?}");
        }
    }

    #[test]
    fn failed_task_is_replaced_per_policy() {
        for (condition, replaced) in [
            (RestartCondition::Any, true),
            (RestartCondition::None, false),
        ] {
            let svc = service(
                Mode::Replicated(ReplicatedService { replicas: 1 }),
                condition,
            );
            let (mut s, mut idx) = state_with(
                vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
                svc,
            );
            step(&mut s, &mut idx);
            let first = live(&s)[0].id.clone();
            set_task_state(&mut s, &mut idx, &first, TaskState::Failed, "n1");
            step(&mut s, &mut idx);
            step(&mut s, &mut idx);
            let running: Vec<Task> = live(&s);
            assert_eq!(
                running.iter().any(|t| t.id != first),
                replaced,
                "{condition:?}"
            );
        }
    }

    #[test]
    fn tasks_on_a_down_node_are_replaced() {
        let svc = service(
            Mode::Replicated(ReplicatedService { replicas: 1 }),
            RestartCondition::None,
        );
        let (mut s, mut idx) = state_with(
            vec![node("n1", NodeState::Ready, NodeAvailability::Active)],
            svc,
        );
        step(&mut s, &mut idx);
        let first = live(&s)[0].id.clone();
        set_task_state(&mut s, &mut idx, &first, TaskState::Running, "n1");
        let mut n = s.node("n1").unwrap().clone();
        n.status.as_mut().unwrap().state = NodeState::Down as i32;
        apply(
            &mut s,
            vec![action(StoreActionKind::Update, Object::Node(n))],
            &mut idx,
        );
        step(&mut s, &mut idx);
        step(&mut s, &mut idx);
        let running = live(&s);
        assert_eq!(running.len(), 1);
        assert_ne!(running[0].id, first);
    }

    #[test]
    fn global_service_covers_available_nodes_only() {
        let svc = service(Mode::Global(GlobalService {}), RestartCondition::Any);
        let (mut s, mut idx) = state_with(
            vec![
                node("n1", NodeState::Ready, NodeAvailability::Active),
                node("n2", NodeState::Ready, NodeAvailability::Drain),
                node("n3", NodeState::Ready, NodeAvailability::Active),
            ],
            svc,
        );
        step(&mut s, &mut idx);
        let mut nodes: Vec<String> = live(&s).into_iter().map(|t| t.node_id).collect();
        nodes.sort();
        assert_eq!(nodes, ["n1", "n3"]);
    }
}

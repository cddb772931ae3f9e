//! What the executor does with an assignment set, decided from the set and what this
//! agent runs alone: which tasks to start, to stop, to retract (never run here, or
//! adopted and no longer wanted), and which to forget (the managers dropped them).

use std::collections::HashSet;

use shoal_proto::{Task, TaskState};

/// The executor's work for one assignment set, as task IDs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Wanted running, not running here, not finished: start (or adopt) it.
    pub start: Vec<String>,
    /// Running here, now told to stop.
    pub stop: Vec<String>,
    /// Told to stop but not running here: withdraw what an earlier life of the agent
    /// published, remove its workload if one is left, report it shut down.
    pub retract: Vec<String>,
    /// Running here but no longer listed: stop it and remove its workload.
    pub forget: Vec<String>,
    /// Workloads found at start-up whose task the managers do not list: remove them.
    pub orphans: Vec<String>,
}

pub fn plan(tasks: &[Task], running: &HashSet<String>, existing: &HashSet<String>) -> Plan {
    let mut plan = Plan::default();
    let listed: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    for t in tasks {
        let wanted = t.desired_state() == TaskState::Running;
        let finished = t.current_state().is_terminal();
        match (wanted, running.contains(&t.id)) {
            (true, false) if !finished => plan.start.push(t.id.clone()),
            (false, true) => plan.stop.push(t.id.clone()),
            (false, false) if !finished => plan.retract.push(t.id.clone()),
            _ => {}
        }
    }
    plan.forget = running
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .cloned()
        .collect();
    plan.orphans = existing
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .cloned()
        .collect();
    plan.forget.sort();
    plan.orphans.sort();
    plan
}

#[cfg(test)]
mod tests {
    use shoal_proto::TaskStatus;

    use super::*;

    fn task(id: &str, desired: TaskState, state: TaskState) -> Task {
        Task {
            id: id.into(),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ids(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn an_assignment_set_becomes_starts_stops_retractions_and_removals() {
        use TaskState::{Assigned, Complete, Failed, Running, Shutdown};
        let tasks = [
            task("new", Running, Assigned),
            task("up", Running, Running),
            task("done", Running, Complete),
            task("stopping", Shutdown, Running),
            task("elsewhere", Shutdown, Running),
            task("failed", Shutdown, Failed),
        ];
        let plan = plan(
            &tasks,
            &ids(&["up", "stopping", "dropped"]),
            &ids(&["new", "old"]),
        );
        assert_eq!(plan.start, ["new"], "a finished task is not started again");
        assert_eq!(plan.stop, ["stopping"]);
        assert_eq!(plan.retract, ["elsewhere"], "a failed task needs nothing");
        assert_eq!(plan.forget, ["dropped"]);
        assert_eq!(
            plan.orphans,
            ["old"],
            "an adopted workload still listed is kept"
        );
    }

    #[test]
    fn the_same_set_twice_starts_nothing_twice() {
        let tasks = [task("a", TaskState::Running, TaskState::Assigned)];
        let first = plan(&tasks, &HashSet::new(), &HashSet::new());
        assert_eq!(first.start, ["a"]);
        let again = plan(&tasks, &ids(&["a"]), &HashSet::new());
        assert_eq!(again, Plan::default());
    }
}

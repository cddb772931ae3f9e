//! Text as docker prints it: tabwriter tables, RFC 3339 times, "3 seconds ago", and the
//! display names of enum values.

use shoal_proto::{NodeAvailability, NodeRole, NodeState, Reachability, TaskState};

/// Left-aligned columns separated by at least three spaces, like docker's tabwriter.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i] + 3));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.iter().map(ToString::to_string).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "Unknown",
        NodeState::Down => "Down",
        NodeState::Ready => "Ready",
        NodeState::Disconnected => "Disconnected",
    }
}

pub fn availability_name(a: NodeAvailability) -> &'static str {
    match a {
        NodeAvailability::Active => "Active",
        NodeAvailability::Pause => "Pause",
        NodeAvailability::Drain => "Drain",
    }
}

pub fn role_name(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Worker => "worker",
        NodeRole::Manager => "manager",
    }
}

pub fn reachability_name(r: Reachability) -> &'static str {
    match r {
        Reachability::Unknown => "Unknown",
        Reachability::Unreachable => "Unreachable",
        Reachability::Reachable => "Reachable",
    }
}

/// A task state as docker prints it.
pub fn task_state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::New => "New",
        TaskState::Pending => "Pending",
        TaskState::Assigned => "Assigned",
        TaskState::Accepted => "Accepted",
        TaskState::Preparing => "Preparing",
        TaskState::Ready => "Ready",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Complete => "Complete",
        TaskState::Shutdown => "Shutdown",
        TaskState::Failed => "Failed",
        TaskState::Rejected => "Rejected",
        TaskState::Remove => "Remove",
        TaskState::Orphaned => "Orphaned",
    }
}

/// "3 seconds ago", as docker's go-units phrases it.
pub fn ago(nanos: i64) -> String {
    let secs = ((shoal_proto::now_nanos() - nanos) / 1_000_000_000).max(0);
    let human = match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".to_string(),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    };
    format!("{human} ago")
}

/// Unix nanoseconds as RFC 3339 UTC, the form docker's JSON uses.
pub use shoal_proto::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_500_000_000),
            "2023-11-14T22:13:20.500000000Z"
        );
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&["ID", "NAME"], &[vec!["a".into(), "bb".into()]]);
        assert_eq!(t, "ID   NAME\na    bb\n");
    }
}

//! The node's error: what went wrong starting or running the daemon, in one sentence an
//! operator can act on. The cause is part of the message (not a `source()` chain), so
//! every printer - a log line, a gRPC status, the CLI - shows the same text once.

use shoal_manager::ManagerError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A flag or the host does not allow what was asked; the message says what to pass.
    #[error("{0}")]
    Config(String),
    /// Reading or writing the node's files: state, certificates, sockets, logs.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// The node's saved state cannot be read back.
    #[error("{0}")]
    Corrupt(String),
    /// The manager (Raft, store, CA) did not start or join.
    #[error("{what}: {cause}")]
    Manager { what: String, cause: ManagerError },
    /// The node's keys are sealed (autolock) and were not opened: the message says how.
    #[error("{0}")]
    Locked(String),
    /// A listener or part of the data plane did not start.
    #[error("{what}: {cause}")]
    Start { what: String, cause: String },
}

pub type Result<T> = std::result::Result<T, NodeError>;

impl NodeError {
    pub fn start(what: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        NodeError::Start {
            what: what.into(),
            cause: cause.to_string(),
        }
    }
}

/// Names the file or step an I/O error came from.
pub trait IoContext<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| NodeError::Io {
            what: what(),
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_shown_once_whatever_the_printer() {
        let e = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::NotFound))
            .io(|| "reading /var/lib/shoal/swarm/state.json".into())
            .unwrap_err();
        let text = e.to_string();
        assert_eq!(format!("{e:#}"), text);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
        assert!(std::error::Error::source(&e).is_none());
    }
}

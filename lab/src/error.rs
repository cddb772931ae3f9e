//! The lab's error: why a lab could not be built, used or removed, in one sentence that
//! says what to do. The cause is part of the message, so the CLI shows it once.

use shoal_node::client::{ClientError, daemon_error};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A flag, a name, or the lab's state does not allow what was asked.
    #[error("{0}")]
    Invalid(String),
    /// A step failed: `ip`, a node daemon, a swarm call; the message names it.
    #[error("{0}")]
    Failed(String),
    /// Reading or writing the lab's files, or starting a process.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// A node's daemon could not be reached or refused a call.
    #[error(transparent)]
    Node(#[from] ClientError),
}

impl From<tonic::Status> for LabError {
    fn from(status: tonic::Status) -> Self {
        LabError::Node(daemon_error(status))
    }
}

pub type Result<T> = std::result::Result<T, LabError>;

/// Names the file or step an I/O error came from.
pub trait IoContext<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| LabError::Io {
            what: what(),
            cause,
        })
    }
}

//! The manager's one error: what a cluster call or a leader duty could not do, and why.
//! A store refusal carries its `Refusal` kind, which retries decide on; the gRPC status
//! code follows the kind of error, as dockerd's HTTP codes do.

/// Docker's words for quorum loss, which operators already know.
pub const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{NO_LEADER}")]
    NoLeader,
    /// The store refused the write: why (for retries), and what a user reads.
    #[error("{1}")]
    Rejected(shoal_proto::Refusal, String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<ManagerError> for tonic::Status {
    fn from(e: ManagerError) -> Self {
        let msg = e.to_string();
        match e {
            ManagerError::NoLeader => tonic::Status::unavailable(msg),
            ManagerError::Rejected(..) => tonic::Status::aborted(msg),
            ManagerError::NotFound(_) => tonic::Status::not_found(msg),
            ManagerError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ManagerError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ManagerError::Raft(_) | ManagerError::Storage(_) => tonic::Status::internal(msg),
        }
    }
}

pub type Result<T> = std::result::Result<T, ManagerError>;

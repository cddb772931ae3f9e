//! The manager's one error: what a cluster call or a leader duty could not do, and why.
//! A store refusal carries its `Refusal` kind, which retries decide on; the gRPC status
//! code follows the kind of error, as dockerd's HTTP codes do.

/// Docker's words for quorum loss, which operators already know.
pub const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/// The metadata key marking a refusal for a network the managers do not know.
pub const UNKNOWN_NETWORK: &str = "shoal-unknown-network";

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{NO_LEADER}")]
    NoLeader,
    /// The store refused the write: why (for retries), and what a user reads.
    #[error("{1}")]
    Rejected(shoal_proto::Refusal, String),
    #[error("{0}")]
    NotFound(String),
    /// A network the managers do not know (marked, so a node can tell it from an unknown
    /// container and ask its own dockerd instead: `UNKNOWN_NETWORK`).
    #[error("{0}")]
    NoSuchNetwork(String),
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
            ManagerError::NoSuchNetwork(_) => {
                let mut status = tonic::Status::not_found(msg);
                status.metadata_mut().insert(
                    UNKNOWN_NETWORK,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                status
            }
            ManagerError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ManagerError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ManagerError::Raft(_) | ManagerError::Storage(_) => tonic::Status::internal(msg),
        }
    }
}

pub type Result<T> = std::result::Result<T, ManagerError>;

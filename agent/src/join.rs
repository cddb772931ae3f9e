//! Joining a swarm. The manager's CA is learned from its TLS handshake and checked against
//! the digest in the join token before anything it says is believed; only then does the
//! node send its CSR and the token's secret.

use shoal_proto::ca_client::CaClient;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::tls::{der_to_pem, manager_channel};
use shoal_proto::token::{JoinToken, ca_digest};
use shoal_proto::{
    IssueNodeCertificateRequest, NodeCertificate, NodeDescription, RenewNodeCertificateRequest,
};

use crate::certs::new_key_and_csr;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Token(#[from] shoal_proto::token::TokenError),
    #[error(
        "could not reach a manager at {addr}: {reason}. Check the address and that port 2377/tcp is open between the nodes"
    )]
    Unreachable { addr: String, reason: String },
    #[error(
        "the manager at {0} presented a CA that does not match the join token's digest: the token belongs to another swarm, or something is intercepting the connection. Nothing was changed"
    )]
    CaMismatch(String),
    #[error("the manager refused to join this node: {0}")]
    Refused(String),
    #[error("could not make a key for this node: {0}")]
    Key(String),
}

/// What a node keeps after joining or renewing.
pub struct Granted {
    pub certificate: NodeCertificate,
    pub key_pem: String,
}

/// Asks the manager at `remote` (host:port) for a node certificate.
pub async fn join(
    token: &str,
    remote: &str,
    description: NodeDescription,
    advertise_addr: &str,
) -> Result<Granted, JoinError> {
    let token: JoinToken = token.parse()?;
    let chain = shoal_proto::tls::fetch_presented_chain(remote)
        .await
        .map_err(|e| JoinError::Unreachable {
            addr: remote.to_string(),
            reason: e.to_string(),
        })?;
    let ca_der = chain
        .iter()
        .find(|der| ca_digest(der) == token.ca_digest)
        .ok_or_else(|| JoinError::CaMismatch(remote.to_string()))?;
    let ca_pem = der_to_pem(ca_der);
    let key = new_key_and_csr().map_err(|e| JoinError::Key(e.to_string()))?;
    let channel = manager_channel(remote, &ca_pem, None).map_err(|e| JoinError::Unreachable {
        addr: remote.to_string(),
        reason: e.to_string(),
    })?;
    let certificate = CaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest {
            token: token.to_string(),
            csr_pem: key.csr_pem,
            description: Some(description),
            advertise_addr: advertise_addr.to_string(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => JoinError::Unreachable {
                addr: remote.to_string(),
                reason: s.message().to_string(),
            },
            _ => JoinError::Refused(s.message().to_string()),
        })?
        .into_inner();
    Ok(Granted {
        certificate,
        key_pem: key.key_pem,
    })
}

/// Asks any of `managers` for a new certificate (with a new key) for this node.
pub async fn renew(
    tls: &LiveTls,
    managers: &[String],
    advertise_addr: &str,
) -> Result<Granted, JoinError> {
    let key = new_key_and_csr().map_err(|e| JoinError::Key(e.to_string()))?;
    let mut last = JoinError::Refused("no manager known".into());
    for addr in managers {
        let Ok(channel) = tls.channel(addr) else {
            continue;
        };
        match CaClient::new(channel)
            .renew_node_certificate(RenewNodeCertificateRequest {
                csr_pem: key.csr_pem.clone(),
                advertise_addr: advertise_addr.to_string(),
            })
            .await
        {
            Ok(r) => {
                return Ok(Granted {
                    certificate: r.into_inner(),
                    key_pem: key.key_pem,
                });
            }
            Err(s) => {
                last = JoinError::Unreachable {
                    addr: addr.clone(),
                    reason: s.message().to_string(),
                }
            }
        }
    }
    Err(last)
}

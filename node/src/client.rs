//! Reaching a daemon: its local control socket (the default), or a manager's control port
//! over mTLS with a node certificate.

use std::path::PathBuf;

use shoal_proto::control_client::ControlClient;
use shoal_proto::tls::NodeTls;
use tonic::transport::Channel;

pub const DEFAULT_RUN_DIR: &str = "/run/shoal";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal";
pub const SOCKET_NAME: &str = "shoal.sock";

/// Why a command got no answer from the daemon, in docker's words.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not running, a wrong address, or no certificate to talk to it with.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon refused the request.
    #[error("Error response from daemon: {0}")]
    Refused(String),
}

pub struct Target {
    host: String,
    tls_dir: Option<PathBuf>,
}

impl Target {
    pub fn new(host: Option<String>, tls_dir: Option<PathBuf>) -> Self {
        let host = host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("unix://{DEFAULT_RUN_DIR}/{SOCKET_NAME}"));
        Target { host, tls_dir }
    }

    pub async fn connect(&self) -> Result<ControlClient<Channel>, ClientError> {
        let channel = if let Some(path) = self.host.strip_prefix("unix://") {
            shoal_proto::tls::unix_channel(std::path::Path::new(path))
                .await
                .map_err(|_| {
                    ClientError::Unreachable(format!(
                        "Cannot connect to the shoal daemon at {}. Is the shoal daemon running? Start it with `shoal daemon`",
                        self.host
                    ))
                })?
        } else {
            let addr = self.host.strip_prefix("tcp://").unwrap_or(&self.host);
            let addr = if addr.contains(':') {
                addr.to_string()
            } else {
                format!("{addr}:{}", shoal_proto::CONTROL_PORT)
            };
            let dir = self
                .tls_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR).join("swarm/certificates"));
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f)).map_err(|e| {
                    ClientError::Unreachable(format!(
                        "reading {}: {e} (a node certificate is needed to talk to {addr}; set --tls-dir)",
                        dir.join(f).display()
                    ))
                })
            };
            let tls = NodeTls {
                ca_cert_pem: read("ca.crt")?,
                cert_pem: read("node.crt")?,
                key_pem: read("node.key")?,
            };
            tls.channel(&addr)
                .map_err(|e| ClientError::Unreachable(format!("{addr}: {e}")))?
        };
        Ok(ControlClient::new(channel))
    }
}

/// A daemon's refusal, worded as docker words it.
pub fn daemon_error(status: tonic::Status) -> ClientError {
    match status.code() {
        tonic::Code::Unavailable
            if status.message().contains("transport") || status.message().contains("connect") =>
        {
            ClientError::Unreachable(format!(
                "Cannot reach the shoal daemon: {}",
                status.message()
            ))
        }
        _ => ClientError::Refused(status.message().to_string()),
    }
}

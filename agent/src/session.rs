//! The agent's session with the dispatcher: a heartbeat every period to a manager (any
//! manager forwards to the leader). It learns the period, the managers' addresses and the
//! role the node should have, and tells the daemon when that role changes, when its
//! certificate or trust roots must change (a CA rotation, or a certificate past most of
//! its life), or when the node was removed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::{HeartbeatRequest, NodeDescription, NodeRole};
use tokio::sync::{mpsc, watch};

use crate::gossip::ClusterView;

/// What the session reports to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The store wants this node in another role: renew the certificate.
    RoleChanged(NodeRole),
    /// The managers' addresses changed: worth persisting for the next start.
    Managers(Vec<String>),
    /// Trust these roots (the swarm's, two during a CA rotation) and, if `renew`, get a
    /// new certificate: in place, without restarting anything.
    Certificate { trust_root: String, renew: bool },
    /// The node is no longer part of the swarm.
    Removed(String),
}

/// A certificate change asked for is not asked again sooner than this.
const CERTIFICATE_RETRY: Duration = Duration::from_secs(10);

/// When the node asks for its certificate to be renewed, as Swarm does: at a point drawn
/// between half and 80% of its life, so a fleet issued at once spreads its renewals.
struct Renewal {
    cert_pem: String,
    share: f64,
    asked: Option<Instant>,
}

impl Renewal {
    fn needed(
        &mut self,
        tls: &LiveTls,
        resp: &shoal_proto::HeartbeatResponse,
    ) -> Option<SessionEvent> {
        let current = tls.current();
        if current.cert_pem != self.cert_pem {
            self.cert_pem = current.cert_pem;
            self.share = rand::random_range(0.5..0.8);
        }
        let trust_changed =
            !resp.trust_root_pem.is_empty() && resp.trust_root_pem != current.ca_cert_pem;
        let renew = resp.renew_certificate || tls.renewal_due(SystemTime::now(), self.share);
        let recently = self.asked.is_some_and(|t| t.elapsed() < CERTIFICATE_RETRY);
        if !(trust_changed || renew) || recently {
            return None;
        }
        self.asked = Some(Instant::now());
        Some(SessionEvent::Certificate {
            trust_root: resp.trust_root_pem.clone(),
            renew,
        })
    }
}

pub struct SessionConfig {
    pub node_id: String,
    pub role: NodeRole,
    pub tls: LiveTls,
    pub managers: Vec<String>,
    pub description: NodeDescription,
    /// This node's address as other nodes see it.
    pub addr: String,
    /// Where the gossip keyring and peers the managers hand out go.
    pub gossip_view: watch::Sender<ClusterView>,
}

/// Status of the session, for `info`.
#[derive(Debug, Default, Clone)]
pub struct SessionStatus {
    pub connected: bool,
    pub last_error: String,
    pub period: Duration,
    pub managers: Vec<String>,
}

pub async fn run(
    cfg: SessionConfig,
    status: Arc<Mutex<SessionStatus>>,
    events: mpsc::Sender<SessionEvent>,
) {
    let mut managers = cfg.managers.clone();
    let mut current = 0usize;
    let mut period = Duration::from_millis(shoal_proto::DEFAULT_HEARTBEAT_MS);
    let mut role_reported = None;
    let mut renewal = Renewal {
        cert_pem: String::new(),
        share: 0.5,
        asked: None,
    };
    loop {
        let addr = managers.get(current % managers.len().max(1)).cloned();
        let outcome = match addr {
            Some(addr) => beat(&cfg, &addr).await,
            None => Err(tonic::Status::unavailable("no manager known")),
        };
        match outcome {
            Ok(resp) => {
                period = Duration::from_millis(resp.period_ms.max(100));
                if !resp.manager_addrs.is_empty() && resp.manager_addrs != managers {
                    managers = resp.manager_addrs.clone();
                    current = 0;
                    let _ = events.send(SessionEvent::Managers(managers.clone())).await;
                }
                let desired = resp.desired_role();
                if desired != cfg.role && role_reported != Some(desired) {
                    role_reported = Some(desired);
                    let _ = events.send(SessionEvent::RoleChanged(desired)).await;
                } else if let Some(event) = renewal.needed(&cfg.tls, &resp) {
                    let _ = events.send(event).await;
                }
                let view = ClusterView {
                    keys: resp.network_keys.clone(),
                    primary_key: resp.primary_key_id,
                    peers: resp.gossip_peers.clone(),
                };
                cfg.gossip_view.send_if_modified(|v| {
                    let changed = *v != view;
                    *v = view;
                    changed
                });
                *status.lock().expect("poisoned") = SessionStatus {
                    connected: true,
                    last_error: String::new(),
                    period,
                    managers: managers.clone(),
                };
                tokio::time::sleep(period).await;
            }
            Err(s)
                if s.code() == tonic::Code::NotFound
                    || s.code() == tonic::Code::PermissionDenied =>
            {
                tracing::error!("the swarm no longer knows this node: {}", s.message());
                let _ = events
                    .send(SessionEvent::Removed(s.message().to_string()))
                    .await;
                return;
            }
            Err(s) => {
                tracing::debug!("heartbeat failed: {}", s.message());
                {
                    let mut st = status.lock().expect("poisoned");
                    st.connected = false;
                    st.last_error = s.message().to_string();
                }
                current += 1;
                tokio::time::sleep(period.min(Duration::from_secs(1)) / 2).await;
            }
        }
    }
}

async fn beat(
    cfg: &SessionConfig,
    addr: &str,
) -> Result<shoal_proto::HeartbeatResponse, tonic::Status> {
    let channel = cfg
        .tls
        .channel(addr)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = HeartbeatRequest {
        node_id: cfg.node_id.clone(),
        description: Some(NodeDescription {
            tls_info: Some(cfg.tls.info()),
            ..cfg.description.clone()
        }),
        addr: cfg.addr.clone(),
    };
    let mut client = DispatcherClient::new(channel);
    let call = client.heartbeat(req);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::unavailable(format!(
            "heartbeat to {addr} timed out"
        ))),
    }
}

//! The Engine API over TCP (`shoal daemon --engine-api-addr`), opt-in and on managers
//! only, behind mutual TLS: the server certificate is minted from the cluster CA for the
//! node's addresses (so `docker --tlsverify` can check what it dialled), and a client
//! must present a manager certificate of this swarm, checked on every request as the
//! control port checks its callers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shoal_manager::Manager;
use shoal_manager::api::{Access, authorize_identity};
use shoal_manager::ca::{Signer, node_validity, trust_bundle};
use shoal_proto::RootCa;
use shoal_proto::tls::{PeerIdentity, peer_identity, pem_certs};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::{ApiError, app};
use crate::Daemon;
use crate::error::{IoContext, NodeError, Result};

/// Connections whose TLS handshake finished, with who the client is.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Peer {
    addr: SocketAddr,
    identity: Option<PeerIdentity>,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended with the listener: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            identity: None,
        })
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The listener's TLS for the swarm's root CA as it is now: a server certificate from
/// the CA that signs (re-made when a CA rotation changes it), and client certificates
/// checked against every root the swarm trusts.
fn server_config(cluster: &shoal_proto::Cluster, names: &[String]) -> Result<rustls::ServerConfig> {
    let root = cluster.root_ca.clone().unwrap_or_default();
    let (cert_pem, key_pem) = shoal_manager::ca::sign_server_cert(
        &Signer::of(&root),
        &cluster.id,
        names,
        node_validity(cluster),
    )
    .map_err(|e| tls_error("signing the server certificate", e))?;
    let certs = |pem: &str| -> Vec<CertificateDer<'static>> {
        pem_certs(pem)
            .into_iter()
            .map(CertificateDer::from)
            .collect()
    };
    let roots_der = certs(&trust_bundle(&root));
    let mut roots = rustls::RootCertStore::empty();
    for ca in &roots_der {
        roots
            .add(ca.clone())
            .map_err(|e| tls_error("the cluster CA", e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| tls_error("the client verifier", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| tls_error("the server key", e))?;
    let mut chain = certs(&cert_pem);
    chain.extend(roots_der);
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("the server certificate", e))
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::start(format!("the Docker Engine API's TLS: {what}"), e)
}

/// The server configuration, made again whenever the swarm's root CA changes.
struct ConfigCache {
    manager: Arc<Manager>,
    names: Vec<String>,
    made: Mutex<Option<(RootCa, Arc<rustls::ServerConfig>)>>,
}

impl ConfigCache {
    fn current(&self) -> Result<Arc<rustls::ServerConfig>> {
        let cluster = self.manager.cluster().map_err(|cause| NodeError::Manager {
            what: "reading the cluster's CA".into(),
            cause,
        })?;
        let root = cluster.root_ca.clone().unwrap_or_default();
        let mut made = self.made.lock().expect("poisoned");
        if let Some((r, config)) = made.as_ref()
            && *r == root
        {
            return Ok(config.clone());
        }
        let config = Arc::new(server_config(&cluster, &self.names)?);
        *made = Some((root, config.clone()));
        Ok(config)
    }
}

/// Starts the listener; the returned handle stops it.
pub async fn serve(
    daemon: Arc<Daemon>,
    manager: Arc<Manager>,
    addr: &str,
    names: Vec<String>,
) -> Result<tokio::task::AbortHandle> {
    let configs = ConfigCache {
        manager: manager.clone(),
        names,
        made: Mutex::new(None),
    };
    configs.current()?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)))
        .io(|| format!("cannot listen on {addr} for the Docker Engine API"))?;
    let (local, tcp) = tcp;
    let (mut accepted, accept_loop) = crate::tls_accept::accept_tls(tcp, "engine api", move || {
        configs
            .current()
            .inspect_err(|e| tracing::warn!("{e:#}"))
            .ok()
    });
    let (tx, ready) = mpsc::channel(64);
    let identify = tokio::spawn(async move {
        while let Some((s, peer)) = accepted.recv().await {
            let identity = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| peer_identity(c.as_ref()));
            let peer = Peer {
                addr: peer,
                identity,
            };
            if tx.send((s, peer)).await.is_err() {
                return;
            }
        }
    });
    let checked = app(daemon).layer(axum::middleware::from_fn(move |req, next| {
        authorized(manager.clone(), req, next)
    }));
    let server = tokio::spawn(async move {
        // Aborting this task drops the accept loop with it, closing the socket.
        let _accept_loop = accept_loop;
        let listener = TlsListener { ready, local };
        let service = checked.into_make_service_with_connect_info::<Peer>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!("Docker Engine API over TCP stopped: {e}");
        }
        identify.abort();
    });
    tracing::info!(addr = %local, "serving the Docker Engine API over mutual TLS");
    Ok(server.abort_handle())
}

async fn authorized(manager: Arc<Manager>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>().cloned() else {
        return ApiError::bad_request("no connection information").into_response();
    };
    match authorize_identity(&manager, peer.identity, Access::Manager) {
        Ok(_) => next.run(req).await,
        Err(status) => {
            tracing::info!(peer = %peer.addr, "Docker Engine API request refused: {}", status.message());
            ApiError::from(status).into_response()
        }
    }
}

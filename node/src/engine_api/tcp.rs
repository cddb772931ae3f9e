//! The Engine API over TCP (`shoal daemon --engine-api-addr`), opt-in and on managers
//! only, behind mutual TLS: the server certificate is minted from the cluster CA for the
//! node's addresses (so `docker --tlsverify` can check what it dialled), and a client
//! must present a manager certificate of this swarm, checked on every request as the
//! control port checks its callers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shoal_manager::Manager;
use shoal_manager::api::{Access, authorize_identity};
use shoal_proto::tls::{NodeTls, PeerIdentity, peer_identity};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{ApiError, app};
use crate::Daemon;
use crate::error::{IoContext, NodeError, Result};

/// Handshakes take at most this long, so a silent client holds nothing.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(5);

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

fn server_config(tls: &NodeTls, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig> {
    let ca = CertificateDer::from_pem_slice(tls.ca_cert_pem.as_bytes())
        .map_err(|e| tls_error("the cluster CA", e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| tls_error("the cluster CA", e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| tls_error("the client verifier", e))?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| tls_error("the server certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| tls_error("the server key", e))?;
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert, ca], key)
        .map_err(|e| tls_error("the server certificate", e))
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::start(format!("the Docker Engine API's TLS: {what}"), e)
}

/// Starts the listener; the returned handle stops it.
pub async fn serve(
    daemon: Arc<Daemon>,
    manager: Arc<Manager>,
    addr: &str,
    names: Vec<String>,
    tls: &NodeTls,
) -> Result<tokio::task::AbortHandle> {
    let cluster = manager.cluster().map_err(|cause| NodeError::Manager {
        what: "reading the cluster's CA".into(),
        cause,
    })?;
    let root = cluster.root_ca.unwrap_or_default();
    let (cert, key) = shoal_manager::ca::sign_server_cert(
        &root.ca_cert_pem,
        &root.ca_key_pem,
        &cluster.id,
        &names,
    )
    .map_err(|e| tls_error("signing the server certificate", e))?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config(tls, &cert, &key)?));
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)))
        .io(|| format!("cannot listen on {addr} for the Docker Engine API"))?;
    let (local, tcp) = tcp;
    let (tx, ready) = mpsc::channel(64);
    let handshakes = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let identity = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| peer_identity(c.as_ref()));
                        let _ = tx
                            .send((
                                s,
                                Peer {
                                    addr: peer,
                                    identity,
                                },
                            ))
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "engine api TLS handshake: {e}"),
                    Err(_) => tracing::debug!(%peer, "engine api TLS handshake timed out"),
                }
            });
        }
    });
    let checked = app(daemon).layer(axum::middleware::from_fn(move |req, next| {
        authorized(manager.clone(), req, next)
    }));
    let server = tokio::spawn(async move {
        let listener = TlsListener { ready, local };
        let service = checked.into_make_service_with_connect_info::<Peer>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!("Docker Engine API over TCP stopped: {e}");
        }
        handshakes.abort();
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

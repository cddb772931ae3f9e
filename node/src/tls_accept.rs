//! TLS listeners: each accepted connection gets the server configuration current at that
//! moment (a renewed certificate or new trust roots apply to the next connection, and the
//! open ones carry on), and handshakes run side by side, each bounded in time, so a
//! silent client holds nothing up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const HANDSHAKE: Duration = Duration::from_secs(5);

pub type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// The accept loop; dropping it closes the listening socket (so a restarted manager can
/// listen again at once).
pub struct AcceptLoop(JoinHandle<()>);

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connections whose handshake finished, while the returned loop lives.
pub fn accept_tls(
    listener: TcpListener,
    what: &'static str,
    config: impl Fn() -> Option<Arc<rustls::ServerConfig>> + Send + 'static,
) -> (mpsc::Receiver<Accepted>, AcceptLoop) {
    let (tx, ready) = mpsc::channel(64);
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Some(config) = config() else {
                tracing::warn!(%peer, "{what}: no TLS configuration to answer with");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let accept = TlsAcceptor::from(config).accept(stream);
                match tokio::time::timeout(HANDSHAKE, accept).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send((s, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "{what} TLS handshake: {e}"),
                    Err(_) => tracing::debug!(%peer, "{what} TLS handshake timed out"),
                }
            });
        }
    });
    (ready, AcceptLoop(handle))
}

//! TLS plumbing shared by every node: client channels (mTLS to managers, the local control
//! socket), the certificate identity a peer presents, and the one unauthenticated step of a
//! join, learning a manager's CA so it can be checked against the token's digest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::NodeRole;

/// Name every manager certificate carries, and that clients expect of a manager.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";
/// Name worker certificates carry: a worker can never pass for a manager.
pub const WORKER_SERVER_NAME: &str = "swarm-worker";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// PEM material a node uses to prove who it is.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl NodeTls {
    /// An mTLS channel to the manager at `addr`, presenting this node's certificate.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        manager_channel(
            addr,
            &self.ca_cert_pem,
            Some((&self.cert_pem, &self.key_pem)),
        )
    }
}

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
}

pub fn role_org_unit(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_SERVER_NAME,
        NodeRole::Worker => WORKER_SERVER_NAME,
    }
}

/// Reads node ID (CN), role (OU) and cluster ID (O) from a DER certificate.
pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let node_id = first(&mut subject.iter_common_name())?;
    let role = match first(&mut subject.iter_organizational_unit())?.as_str() {
        MANAGER_SERVER_NAME => NodeRole::Manager,
        WORKER_SERVER_NAME => NodeRole::Worker,
        _ => return None,
    };
    let cluster_id = first(&mut subject.iter_organization()).unwrap_or_default();
    Some(PeerIdentity {
        node_id,
        role,
        cluster_id,
    })
}

/// The identity in the first certificate a tonic request's peer presented, if any.
pub fn request_identity<T>(req: &tonic::Request<T>) -> Option<PeerIdentity> {
    let certs = req.peer_certs()?;
    certs.first().and_then(|c| peer_identity(c.as_ref()))
}

/// Every certificate of a PEM bundle, as DER, in order.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .collect()
}

/// The first certificate of a PEM bundle, as DER.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    pem_certs(pem).into_iter().next()
}

/// A CA certificate's subject and public key (SubjectPublicKeyInfo), both DER: what the
/// Engine API's TLSInfo shows of the root CA.
pub fn issuer_of(ca_pem: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let der = pem_to_der(ca_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        cert.tbs_certificate.subject.as_raw().to_vec(),
        cert.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}

/// DER to PEM, for certificates learned from a handshake.
pub fn der_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der))
}

fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(endpoint_settings(Endpoint::from_shared(format!(
        "https://{addr}"
    ))?))
}

/// How every channel to a manager behaves.
pub(crate) fn endpoint_settings(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A partition leaves a long-lived stream (assignments) looking open, and once it
        // heals TCP's backed-off retransmissions take many seconds to deliver what was
        // queued: pings find the dead connection so the node reconnects at once.
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// A channel to a manager at `addr`, trusting only `ca_pem`, presenting `identity` if given.
/// Connects lazily: errors surface on the first call.
pub fn manager_channel(
    addr: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(MANAGER_SERVER_NAME);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(endpoint(addr)?.tls_config(tls)?.connect_lazy())
}

/// A channel over a unix socket (the daemon's control socket).
pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

/// Handshakes with `addr` without trusting it, and returns the certificate chain it
/// presented (leaf first; managers send their CA last). The caller must check the CA
/// against the join token's digest before believing anything else.
pub async fn fetch_presented_chain(addr: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(ChainRecorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(MANAGER_SERVER_NAME).map_err(std::io::Error::other)?;
    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let chain = recorder.chain.lock().expect("poisoned").clone();
    Ok(chain)
}

/// Accepts any chain but records it; signatures are still verified so the server proves it
/// holds the key of the leaf it presented.
#[derive(Debug)]
struct ChainRecorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        *self.chain.lock().expect("poisoned") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_der_round_trip() {
        for len in [0usize, 1, 2, 3, 4, 100, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            assert_eq!(pem_to_der(&der_to_pem(&der)).unwrap(), der, "len {len}");
        }
    }
}

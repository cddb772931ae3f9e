//! A node's TLS identity while it runs, replaceable in place: a CA rotation or a renewal
//! hands every component the new certificate and trust roots for its next connection,
//! while connections already open carry on (nothing is restarted, nothing dropped).
//! Channels dial through a connector that reads the current material on each connect,
//! and listeners hand each accepted connection the current server configuration.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::TlsInfo;
use crate::tls::{MANAGER_SERVER_NAME, NodeTls, endpoint_settings, pem_certs};

#[derive(Debug, thiserror::Error)]
#[error("TLS material is unusable: {0}")]
pub struct TlsError(String);

fn bad(what: &str) -> impl Fn(rustls::Error) -> TlsError + '_ {
    move |e| TlsError(format!("{what}: {e}"))
}

/// The material and the configurations made from it, checked once when it is installed.
struct Material {
    pem: NodeTls,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Material {
    fn build(pem: NodeTls) -> Result<Material, TlsError> {
        let der = |p: &str| -> Vec<CertificateDer<'static>> {
            pem_certs(p).into_iter().map(CertificateDer::from).collect()
        };
        let (roots_der, chain) = (der(&pem.ca_cert_pem), der(&pem.cert_pem));
        if roots_der.is_empty() || chain.is_empty() {
            return Err(TlsError(
                "no certificate in the CA or node certificate".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for root in &roots_der {
            roots.add(root.clone()).map_err(bad("a root CA"))?;
        }
        let roots = Arc::new(roots);
        let key = || {
            PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())
                .map_err(|e| TlsError(format!("the node key: {e}")))
        };
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(bad("protocol versions"))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key()?)
            .map_err(bad("the node certificate"))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError(format!("the client verifier: {e}")))?;
        // The chain ends with the roots so a joining node can check them against its token.
        let mut presented = chain;
        presented.extend(roots_der);
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(bad("protocol versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(presented, key()?)
            .map_err(bad("the node certificate"))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Material {
            pem,
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// A node's TLS identity, shared by every component of the node.
#[derive(Clone)]
pub struct LiveTls(Arc<RwLock<Arc<Material>>>);

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTls")
    }
}

impl LiveTls {
    pub fn new(pem: NodeTls) -> Result<LiveTls, TlsError> {
        Ok(LiveTls(Arc::new(RwLock::new(Arc::new(Material::build(
            pem,
        )?)))))
    }

    fn material(&self) -> Arc<Material> {
        self.0.read().expect("poisoned").clone()
    }

    /// The PEM material in use.
    pub fn current(&self) -> NodeTls {
        self.material().pem.clone()
    }

    /// Installs new material for every connection made from now on; unusable material is
    /// refused and the old stays.
    pub fn replace(&self, pem: NodeTls) -> Result<(), TlsError> {
        let built = Arc::new(Material::build(pem)?);
        *self.0.write().expect("poisoned") = built;
        Ok(())
    }

    /// What a client presents and trusts on its next connection.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.material().client.clone()
    }

    /// What a listener hands the next connection it accepts.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.material().server.clone()
    }

    /// An mTLS channel to the manager at `addr`; each connection it makes (and remakes)
    /// presents the certificate current at that moment. Connects lazily.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let live = self.clone();
        let connector = tower::service_fn(move |uri: tonic::transport::Uri| {
            let config = live.material().client.clone();
            async move {
                let authority = uri
                    .authority()
                    .map(ToString::to_string)
                    .ok_or_else(|| std::io::Error::other("no address to dial"))?;
                let tcp = TcpStream::connect(authority).await?;
                tcp.set_nodelay(true)?;
                let name =
                    ServerName::try_from(MANAGER_SERVER_NAME).map_err(std::io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        Ok(
            endpoint_settings(Endpoint::from_shared(format!("http://{addr}"))?)
                .connect_with_connector_lazy(connector),
        )
    }

    /// What this node reports of its TLS: its trust roots and its certificate's issuer.
    pub fn info(&self) -> TlsInfo {
        tls_info(&self.current())
    }

    /// Whether the certificate is due for renewal at `now`: past `share` of its life (the
    /// caller draws `share` between 0.5 and 0.8 once per certificate, so a fleet issued at
    /// once does not renew at once).
    pub fn renewal_due(&self, now: SystemTime, share: f64) -> bool {
        let Some((from, until)) = validity(&self.current().cert_pem) else {
            return false;
        };
        let life = until.duration_since(from).unwrap_or_default();
        now >= from + Duration::from_secs_f64(life.as_secs_f64() * share)
    }
}

/// The validity window of the first certificate in `pem`.
pub fn validity(pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = pem_certs(pem).into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    Some((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

/// The trust roots and the issuer of the leaf: its subject, and the public key of the CA
/// certificate (in the chain or among the roots) that carries that subject.
pub fn tls_info(tls: &NodeTls) -> TlsInfo {
    let mut info = TlsInfo {
        trust_root_pem: tls.ca_cert_pem.clone(),
        ..Default::default()
    };
    let chain = pem_certs(&tls.cert_pem);
    let Some(leaf) = chain
        .first()
        .and_then(|d| x509_parser::parse_x509_certificate(d).ok())
    else {
        return info;
    };
    let issuer = leaf.1.issuer().as_raw().to_vec();
    let candidates = chain[1..]
        .iter()
        .cloned()
        .chain(pem_certs(&tls.ca_cert_pem));
    for der in candidates {
        if let Ok((_, ca)) = x509_parser::parse_x509_certificate(&der)
            && ca.subject().as_raw() == issuer.as_slice()
        {
            info.cert_issuer_public_key = ca.tbs_certificate.subject_pki.raw.to_vec();
            break;
        }
    }
    info.cert_issuer_subject = issuer;
    info
}

//! The cluster's root CA: made at `swarm init`, kept in the Raft store, used by every manager
//! to sign node certificates. A certificate's subject says who the node is: CN = node ID,
//! OU = role (swarm-manager | swarm-worker), O = cluster ID, as in Swarm.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use shoal_proto::NodeRole;
use shoal_proto::tls::{MANAGER_SERVER_NAME, WORKER_SERVER_NAME, role_org_unit};
use time::{Duration, OffsetDateTime};

const CA_VALIDITY: Duration = Duration::days(20 * 365);
const NODE_VALIDITY: Duration = Duration::days(90);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate signing request is invalid: {0}")]
    BadCsr(String),
    #[error("the cluster CA could not sign: {0}")]
    Signing(String),
}

fn signing(e: rcgen::Error) -> CaError {
    CaError::Signing(e.to_string())
}

/// PEM certificate and key of a newly made root CA.
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

/// A certificate of the cluster `cluster_id` named `common_name`, with these subject
/// alternative names, valid from an hour ago (clock skew) for `validity`.
fn certificate(
    names: Vec<String>,
    common_name: &str,
    cluster_id: &str,
    validity: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(names).map_err(signing)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, cluster_id);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    Ok(params)
}

pub fn create_root_ca(cluster_id: &str) -> Result<NewCa, CaError> {
    let key = KeyPair::generate().map_err(signing)?;
    let mut params = certificate(vec![], "swarm-ca", cluster_id, CA_VALIDITY)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(signing)?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
    })
}

/// Signs a node's CSR. Only the CSR's public key is used: the subject, names and usages are
/// set here, from the store, so a node cannot ask for more than it was granted.
pub fn sign_node_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_pem: &str,
    node_id: &str,
    role: NodeRole,
    cluster_id: &str,
) -> Result<String, CaError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError::BadCsr(e.to_string()))?;
    let key = KeyPair::from_pem(ca_key_pem).map_err(signing)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(signing)?;
    let server_name = match role {
        NodeRole::Manager => MANAGER_SERVER_NAME,
        NodeRole::Worker => WORKER_SERVER_NAME,
    };
    let mut params = certificate(
        vec![server_name.to_string(), node_id.to_string()],
        node_id,
        cluster_id,
        NODE_VALIDITY,
    )?;
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role_org_unit(role));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&csr.public_key, &issuer)
        .map_err(signing)?;
    Ok(cert.pem())
}

/// A server certificate for a node's own HTTPS listener (the Docker Engine API over TCP):
/// the cluster CA vouches for `names` (IP addresses and host names) so clients such as
/// `docker --tlsverify` can check the address they dialled. Returns (cert, key) PEM.
pub fn sign_server_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cluster_id: &str,
    names: &[String],
) -> Result<(String, String), CaError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(signing)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(signing)?;
    let key = KeyPair::generate().map_err(signing)?;
    // rcgen makes an IP SAN of a name that parses as an address, a DNS SAN otherwise.
    let mut params = certificate(
        names.to_vec(),
        "shoal-engine-api",
        cluster_id,
        NODE_VALIDITY,
    )?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(signing)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::tls::{peer_identity, pem_to_der};

    #[test]
    fn signed_certificate_carries_identity_from_the_store_not_the_csr() {
        let ca = create_root_ca("cluster1").unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["evil".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let pem = sign_node_csr(
            &ca.cert_pem,
            &ca.key_pem,
            &csr,
            "node1",
            NodeRole::Worker,
            "cluster1",
        )
        .unwrap();
        let id = peer_identity(&pem_to_der(&pem).unwrap()).unwrap();
        assert_eq!(id.node_id, "node1");
        assert_eq!(id.role, NodeRole::Worker);
        assert_eq!(id.cluster_id, "cluster1");
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = create_root_ca("c").unwrap();
        let err = sign_node_csr(
            &ca.cert_pem,
            &ca.key_pem,
            "junk",
            "n",
            NodeRole::Worker,
            "c",
        );
        assert!(matches!(err, Err(CaError::BadCsr(_))));
    }
}

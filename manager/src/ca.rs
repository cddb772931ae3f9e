//! The cluster's root CA: made at `swarm init`, kept in the Raft store, used by every manager
//! to sign node certificates. A certificate's subject says who the node is: CN = node ID,
//! OU = role (swarm-manager | swarm-worker), O = cluster ID, as in Swarm.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use shoal_proto::tls::{MANAGER_SERVER_NAME, WORKER_SERVER_NAME, role_org_unit};
use shoal_proto::{Cluster, NodeRole, RootCa};
use time::{Duration, OffsetDateTime};

const CA_VALIDITY: Duration = Duration::days(20 * 365);
/// Node certificates last this long unless `swarm ca --cert-expiry` says otherwise.
pub const DEFAULT_NODE_VALIDITY_SECS: u64 = shoal_proto::DEFAULT_NODE_CERT_EXPIRY_SECS;
/// The shortest `--cert-expiry` Swarm accepts.
pub const MIN_NODE_VALIDITY_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate signing request is invalid: {0}")]
    BadCsr(String),
    #[error("the cluster CA could not sign: {0}")]
    Signing(String),
    #[error("{0}")]
    BadCa(String),
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

/// A new root CA. Each root has a subject of its own (a random serial in OU), so a node
/// certificate's issuer names exactly one of the roots trusted during a rotation.
pub fn create_root_ca(cluster_id: &str) -> Result<NewCa, CaError> {
    let key = KeyPair::generate().map_err(signing)?;
    let mut params = certificate(vec![], "swarm-ca", cluster_id, CA_VALIDITY)?;
    params.distinguished_name.push(
        DnType::OrganizationalUnitName,
        format!("root-{}", &shoal_proto::ids::new_id()[..12]),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(signing)?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
    })
}

/// What signs node certificates: the new CA while a rotation runs (its certificates carry
/// the new root cross-signed by the old, for nodes that trust only the old), else the root.
pub struct Signer<'a> {
    pub cert_pem: &'a str,
    key_pem: &'a str,
    /// Appended to every certificate signed: the cross-signed new root, or nothing.
    chain_pem: &'a str,
}

impl<'a> Signer<'a> {
    pub fn of(root: &'a RootCa) -> Signer<'a> {
        match &root.rotation {
            Some(r) => Signer {
                cert_pem: &r.ca_cert_pem,
                key_pem: &r.ca_key_pem,
                chain_pem: &r.cross_signed_ca_pem,
            },
            None => Signer {
                cert_pem: &root.ca_cert_pem,
                key_pem: &root.ca_key_pem,
                chain_pem: "",
            },
        }
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        let key = KeyPair::from_pem(self.key_pem).map_err(signing)?;
        Issuer::from_ca_cert_pem(self.cert_pem, key).map_err(signing)
    }
}

/// The roots every node must trust: the root CA, and the new one while a rotation runs.
pub fn trust_bundle(root: &RootCa) -> String {
    match &root.rotation {
        Some(r) => format!("{}{}", root.ca_cert_pem, r.ca_cert_pem),
        None => root.ca_cert_pem.clone(),
    }
}

/// How long the swarm's node certificates last.
pub fn node_validity(cluster: &Cluster) -> Duration {
    let secs = cluster
        .spec
        .as_ref()
        .and_then(|s| s.ca_config.as_ref())
        .map(|c| c.node_cert_expiry_secs)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_NODE_VALIDITY_SECS);
    Duration::seconds(secs as i64)
}

/// The new root `new` signed by the old root: a certificate with the new root's subject
/// and key that chains to the old root, so nodes still trusting only the old root accept
/// what the new one signs.
pub fn cross_sign(new_cert_pem: &str, new_key_pem: &str, old: &RootCa) -> Result<String, CaError> {
    let der = shoal_proto::tls::pem_to_der(new_cert_pem)
        .ok_or_else(|| CaError::BadCa("the new root CA is not a PEM certificate".into()))?;
    let (_, new) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CaError::BadCa(format!("the new root CA cannot be read: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name_of(new.subject())?;
    params.not_before = new.validity().not_before.to_datetime();
    params.not_after = new.validity().not_after.to_datetime();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let new_key = KeyPair::from_pem(new_key_pem).map_err(signing)?;
    let old_key = KeyPair::from_pem(&old.ca_key_pem).map_err(signing)?;
    let issuer = Issuer::from_ca_cert_pem(&old.ca_cert_pem, old_key).map_err(signing)?;
    Ok(params.signed_by(&new_key, &issuer).map_err(signing)?.pem())
}

/// A certificate's subject, kept in the string types it was written with, so the
/// cross-signed copy names exactly the same CA.
fn name_of(name: &x509_parser::x509::X509Name) -> Result<DistinguishedName, CaError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let odd = || {
        CaError::BadCa("the new root CA's subject uses an encoding shoal cannot copy: give one with UTF-8 or printable strings".into())
    };
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(odd());
        };
        let oid: Vec<u64> = attr.attr_type().iter().ok_or_else(odd)?.collect();
        let text = std::str::from_utf8(attr.attr_value().data).map_err(|_| odd())?;
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into().map_err(|_| odd())?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into().map_err(|_| odd())?),
            _ => return Err(odd()),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Checks an operator's root CA (`swarm ca --rotate --ca-cert --ca-key`): one CA
/// certificate, valid now, that the key belongs to, named differently from `current`.
pub fn check_given_ca(cert_pem: &str, key_pem: &str, current: &RootCa) -> Result<(), CaError> {
    let bad = |m: &str| CaError::BadCa(format!("the given CA certificate {m}"));
    let der = shoal_proto::tls::pem_certs(cert_pem);
    let [der] = der.as_slice() else {
        return Err(bad("must be exactly one PEM certificate"));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| bad(&format!("cannot be read: {e}")))?;
    if !cert.is_ca() {
        return Err(bad("is not a CA (its basic constraints say CA:FALSE)"));
    }
    if !cert.validity().is_valid() {
        return Err(bad("is expired or not yet valid"));
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| {
        CaError::BadCa(format!(
            "the given CA key cannot be read ({e}): give a PEM private key"
        ))
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.tbs_certificate.subject_pki.raw {
        return Err(bad("does not belong to the given key"));
    }
    let (subject, _) = shoal_proto::tls::issuer_of(&current.ca_cert_pem).unwrap_or_default();
    if cert.subject().as_raw() == subject.as_slice() {
        return Err(bad(
            "has the same subject as the swarm's current root CA: give the new CA a subject of its own",
        ));
    }
    Ok(())
}

/// Signs a node's CSR. Only the CSR's public key is used: the subject, names and usages are
/// set here, from the store, so a node cannot ask for more than it was granted. Returns
/// the certificate followed by the signer's chain.
pub fn sign_node_csr(
    signer: &Signer,
    csr_pem: &str,
    node_id: &str,
    role: NodeRole,
    cluster_id: &str,
    validity: Duration,
) -> Result<String, CaError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError::BadCsr(e.to_string()))?;
    let issuer = signer.issuer()?;
    let server_name = match role {
        NodeRole::Manager => MANAGER_SERVER_NAME,
        NodeRole::Worker => WORKER_SERVER_NAME,
    };
    let mut params = certificate(
        vec![server_name.to_string(), node_id.to_string()],
        node_id,
        cluster_id,
        validity,
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
    Ok(format!("{}{}", cert.pem(), signer.chain_pem))
}

/// A server certificate for a node's own HTTPS listener (the Docker Engine API over TCP):
/// the cluster CA vouches for `names` (IP addresses and host names) so clients such as
/// `docker --tlsverify` can check the address they dialled. Returns (cert and the signer's
/// chain, key) PEM.
pub fn sign_server_cert(
    signer: &Signer,
    cluster_id: &str,
    names: &[String],
    validity: Duration,
) -> Result<(String, String), CaError> {
    let issuer = signer.issuer()?;
    let key = KeyPair::generate().map_err(signing)?;
    // rcgen makes an IP SAN of a name that parses as an address, a DNS SAN otherwise.
    let mut params = certificate(names.to_vec(), "shoal-engine-api", cluster_id, validity)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(signing)?;
    Ok((
        format!("{}{}", cert.pem(), signer.chain_pem),
        key.serialize_pem(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::live_tls::LiveTls;
    use shoal_proto::tls::{NodeTls, peer_identity, pem_to_der};

    fn root(cluster: &str) -> RootCa {
        let ca = create_root_ca(cluster).unwrap();
        RootCa {
            ca_cert_pem: ca.cert_pem,
            ca_key_pem: ca.key_pem,
            ..Default::default()
        }
    }

    fn csr(key: &KeyPair) -> String {
        CertificateParams::new(vec!["evil".to_string()])
            .unwrap()
            .serialize_request(key)
            .unwrap()
            .pem()
            .unwrap()
    }

    const DAY: Duration = Duration::days(1);

    #[test]
    fn signed_certificate_carries_identity_from_the_store_not_the_csr() {
        let root = root("cluster1");
        let key = KeyPair::generate().unwrap();
        let pem = sign_node_csr(
            &Signer::of(&root),
            &csr(&key),
            "node1",
            NodeRole::Worker,
            "cluster1",
            DAY,
        )
        .unwrap();
        let id = peer_identity(&pem_to_der(&pem).unwrap()).unwrap();
        assert_eq!(id.node_id, "node1");
        assert_eq!(id.role, NodeRole::Worker);
        assert_eq!(id.cluster_id, "cluster1");
    }

    #[test]
    fn garbage_csr_is_refused() {
        let root = root("c");
        let err = sign_node_csr(&Signer::of(&root), "junk", "n", NodeRole::Worker, "c", DAY);
        assert!(matches!(err, Err(CaError::BadCsr(_))));
    }

    /// A node's TLS as the swarm `root` would issue it now.
    fn node(root: &RootCa, id: &str) -> LiveTls {
        let key = KeyPair::generate().unwrap();
        let cert_pem = sign_node_csr(
            &Signer::of(root),
            &csr(&key),
            id,
            NodeRole::Manager,
            "c",
            DAY,
        )
        .unwrap();
        LiveTls::new(NodeTls {
            ca_cert_pem: trust_bundle(root),
            cert_pem,
            key_pem: key.serialize_pem(),
        })
        .unwrap()
    }

    /// A full mutual-TLS handshake in memory, both sides checking the other.
    fn handshake(client: &LiveTls, server: &LiveTls) -> Result<(), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("swarm-manager").unwrap();
        let mut c = rustls::ClientConnection::new(client.client_config(), name)?;
        let mut s = rustls::ServerConnection::new(server.server_config())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() && s.peer_certificates().is_some() {
                return Ok(());
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    fn both_ways(a: &LiveTls, b: &LiveTls) -> bool {
        handshake(a, b).is_ok() && handshake(b, a).is_ok()
    }

    #[test]
    fn a_certificate_is_due_for_renewal_past_the_drawn_share_of_its_life() {
        // Valid from an hour ago (clock skew) for a day: 25 hours in all.
        let n = node(&root("c"), "a");
        let hours =
            |h: u64| std::time::SystemTime::now() + std::time::Duration::from_secs(h * 3600);
        assert!(!n.renewal_due(hours(0), 0.5));
        assert!(!n.renewal_due(hours(11), 0.5));
        assert!(n.renewal_due(hours(12), 0.5));
        assert!(!n.renewal_due(hours(12), 0.8));
        assert!(n.renewal_due(hours(19), 0.8));
    }

    #[test]
    fn every_pair_of_nodes_connects_at_every_step_of_a_root_rotation() {
        let old_root = root("c");
        let not_yet = node(&old_root, "a");
        let mut rotating = old_root.clone();
        let new = create_root_ca("c").unwrap();
        rotating.rotation = Some(shoal_proto::RootRotation {
            cross_signed_ca_pem: cross_sign(&new.cert_pem, &new.key_pem, &old_root).unwrap(),
            ca_cert_pem: new.cert_pem.clone(),
            ca_key_pem: new.key_pem.clone(),
        });
        // A node that only trusts the new roots yet, still with its old certificate.
        let trusting = node(&old_root, "b");
        let mut pem = trusting.current();
        pem.ca_cert_pem = trust_bundle(&rotating);
        trusting.replace(pem).unwrap();
        let renewed = node(&rotating, "c");
        let issuer = |n: &LiveTls| n.info().cert_issuer_public_key;
        let key_of = |pem: &str| shoal_proto::tls::issuer_of(pem).unwrap().1;
        assert_eq!(issuer(&trusting), key_of(&old_root.ca_cert_pem));
        assert_eq!(issuer(&renewed), key_of(&new.cert_pem));
        assert!(both_ways(&not_yet, &trusting));
        assert!(
            both_ways(&not_yet, &renewed),
            "cross-signed chain to the old root"
        );
        assert!(both_ways(&trusting, &renewed));
        let finished = RootCa {
            ca_cert_pem: new.cert_pem,
            ca_key_pem: new.key_pem,
            ..Default::default()
        };
        let after = node(&finished, "d");
        let mut pem = renewed.current();
        pem.ca_cert_pem = trust_bundle(&finished);
        renewed.replace(pem).unwrap();
        assert!(both_ways(&renewed, &after));
        assert!(
            !both_ways(&not_yet, &after),
            "a node left on the old root is no longer trusted once the rotation is over"
        );
        let stranger = node(&root("c"), "e");
        assert!(
            handshake(&stranger, &after).is_err(),
            "another swarm's node is refused"
        );
    }
}

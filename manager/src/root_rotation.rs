//! Root CA rotation (`swarm ca --rotate`), as Swarm does it: a new root (made here, or the
//! operator's) signs every certificate from then on, each carrying the new root
//! cross-signed by the old so a node still trusting only the old root accepts it; every
//! node is told to trust both roots and to renew its certificate (heartbeats say so). Once
//! every node reports a certificate from the new root, the leader makes it the swarm's
//! only root, and the join tokens change with its digest. No connection is dropped: nodes
//! swap their TLS material in place, and at every moment each pair of nodes has a chain
//! the other trusts. As in Swarm, a node that stays away blocks the end of the rotation
//! until it returns or is removed.

use shoal_proto::stored_object::Object;
use shoal_proto::tls::{issuer_of, pem_to_der};
use shoal_proto::token::{JoinToken, ca_digest};
use shoal_proto::{Cluster, JoinTokens, Node, RootCa, RootRotation, StoreActionKind};

use crate::ca::{CaError, Signer, check_given_ca, create_root_ca, cross_sign};
use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::action;

fn ca_error(e: CaError) -> ManagerError {
    ManagerError::InvalidArgument(e.to_string())
}

/// The root a rotation moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewRoot<'a> {
    /// Made here.
    Generated,
    /// The operator's: its certificate and key, PEM.
    Given { cert: &'a str, key: &'a str },
}

/// Starts a rotation in `cluster` to `new`. Rotating again during a rotation replaces the
/// root in progress.
pub fn start(cluster: &mut Cluster, new: NewRoot) -> Result<()> {
    let root = cluster.root_ca.clone().unwrap_or_default();
    let (cert, key, given) = if let NewRoot::Given { cert, key } = new {
        check_given_ca(cert, key, &root).map_err(ca_error)?;
        (cert.to_string(), key.to_string(), cert.to_string())
    } else {
        let ca = create_root_ca(&cluster.id).map_err(ca_error)?;
        (ca.cert_pem, ca.key_pem, String::new())
    };
    let cross_signed_ca_pem = cross_sign(&cert, &key, &root).map_err(ca_error)?;
    cluster
        .spec
        .get_or_insert_default()
        .ca_config
        .get_or_insert_default()
        .signing_ca_cert_pem = given;
    cluster.root_ca.get_or_insert_default().rotation = Some(RootRotation {
        ca_cert_pem: cert,
        ca_key_pem: key,
        cross_signed_ca_pem,
    });
    tracing::info!("root CA rotation started");
    Ok(())
}

/// The public key of the CA that signs certificates now.
pub fn signer_key(root: &RootCa) -> Vec<u8> {
    issuer_of(Signer::of(root).cert_pem)
        .map(|(_, key)| key)
        .unwrap_or_default()
}

/// Whether `node` reports a certificate from the CA whose public key is `signer`
/// (`signer_key`, read once for many nodes).
pub fn has_current_certificate(node: &Node, signer: &[u8]) -> bool {
    node.description
        .as_ref()
        .and_then(|d| d.tls_info.as_ref())
        .is_some_and(|t| t.cert_issuer_public_key == signer)
}

/// The root rotation's end, once every node has a certificate from the new root: the new
/// root becomes the swarm's root, with new join tokens for its digest.
fn finished(mut cluster: Cluster) -> Option<Cluster> {
    let root = cluster.root_ca.as_mut()?;
    let rotation = root.rotation.take()?;
    let der = pem_to_der(&rotation.ca_cert_pem)?;
    root.ca_cert_pem = rotation.ca_cert_pem;
    root.ca_key_pem = rotation.ca_key_pem;
    root.ca_cert_digest = ca_digest(&der);
    root.join_tokens = Some(JoinTokens {
        worker: JoinToken::generate(&der).to_string(),
        manager: JoinToken::generate(&der).to_string(),
    });
    Some(cluster)
}

/// On the leader: ends a rotation every node has caught up with.
pub async fn finish_if_converged(m: &impl Proposer) -> Result<()> {
    let converged = m.store().view(|s| {
        let root = s.cluster()?.root_ca.clone()?;
        root.rotation.as_ref()?;
        let signer = signer_key(&root);
        s.nodes()
            .all(|n| has_current_certificate(n, &signer))
            .then_some(())
    });
    if converged.is_none() {
        return Ok(());
    }
    m.update_with_retry(|s| {
        let Some(cluster) = s.cluster().cloned().and_then(finished) else {
            return Ok(vec![]);
        };
        Ok(vec![action(
            StoreActionKind::Update,
            Object::Cluster(cluster),
        )])
    })
    .await?;
    tracing::info!("root CA rotation complete: every node has a certificate from the new root");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{NodeDescription, TlsInfo};

    fn cluster() -> Cluster {
        let ca = create_root_ca("c1").unwrap();
        let der = pem_to_der(&ca.cert_pem).unwrap();
        Cluster {
            id: "c1".into(),
            root_ca: Some(RootCa {
                ca_cert_digest: ca_digest(&der),
                ca_cert_pem: ca.cert_pem,
                ca_key_pem: ca.key_pem,
                join_tokens: Some(JoinTokens {
                    worker: JoinToken::generate(&der).to_string(),
                    manager: JoinToken::generate(&der).to_string(),
                }),
                rotation: None,
            }),
            ..Default::default()
        }
    }

    fn node_issued_by(ca_pem: &str) -> Node {
        let (subject, key) = issuer_of(ca_pem).unwrap();
        Node {
            description: Some(NodeDescription {
                tls_info: Some(TlsInfo {
                    trust_root_pem: String::new(),
                    cert_issuer_subject: subject,
                    cert_issuer_public_key: key,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_rotation_ends_with_the_new_root_and_new_tokens() {
        let mut c = cluster();
        let old = c.root_ca.clone().unwrap();
        let old_node = node_issued_by(&old.ca_cert_pem);
        assert!(has_current_certificate(&old_node, &signer_key(&old)));
        start(&mut c, NewRoot::Generated).unwrap();
        let rotating = c.root_ca.clone().unwrap();
        let new_pem = rotating.rotation.as_ref().unwrap().ca_cert_pem.clone();
        let signer = signer_key(&rotating);
        assert!(!has_current_certificate(&old_node, &signer));
        assert!(has_current_certificate(&node_issued_by(&new_pem), &signer));
        let done = finished(c).unwrap().root_ca.unwrap();
        assert_eq!(done.ca_cert_pem, new_pem);
        assert!(done.rotation.is_none());
        assert_ne!(done.ca_cert_digest, old.ca_cert_digest);
        let token: JoinToken = done.join_tokens.unwrap().worker.parse().unwrap();
        assert_eq!(token.ca_digest, done.ca_cert_digest);
    }

    #[test]
    fn a_given_ca_is_checked_before_anything_changes() {
        let mut c = cluster();
        let other = create_root_ca("c1").unwrap();
        let wrong_key = create_root_ca("c1").unwrap().key_pem;
        let given = |cert, key| NewRoot::Given { cert, key };
        let err = start(&mut c, given(&other.cert_pem, &wrong_key)).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let same = c.root_ca.clone().unwrap();
        let err = start(&mut c, given(&same.ca_cert_pem, &same.ca_key_pem)).unwrap_err();
        assert!(err.to_string().contains("same subject"), "{err}");
        assert!(c.root_ca.as_ref().unwrap().rotation.is_none());
        start(&mut c, given(&other.cert_pem, &other.key_pem)).unwrap();
        assert_eq!(
            c.root_ca.unwrap().rotation.unwrap().ca_cert_pem,
            other.cert_pem
        );
    }
}

//! A node's key and certificate requests.

use rcgen::{CertificateParams, KeyPair};

/// A new key pair and a CSR for it. The CSR carries only the public key: the manager
/// decides the subject.
pub struct NewKey {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn new_key_and_csr() -> Result<NewKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok(NewKey {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

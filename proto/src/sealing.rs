//! Authenticated encryption as every part of shoal seals: XChaCha20-Poly1305 with a fresh
//! random nonce, the output `header | nonce | ciphertext + tag`. What binds a sealed value
//! to its use (the header itself, a key id, where it is stored) goes in as associated data.
//! Gossip frames (agent) and the Raft store at rest (manager) both seal through here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

pub use chacha20poly1305::XChaCha20Poly1305 as Cipher;

/// Bytes of the nonce that follows the header.
pub const NONCE: usize = 24;
/// Bytes sealing adds to a payload besides the header: the nonce and the tag.
pub const OVERHEAD: usize = NONCE + 16;

/// A cipher for a 32-byte key; None for any other length.
pub fn cipher(key: &[u8]) -> Option<Cipher> {
    XChaCha20Poly1305::new_from_slice(key).ok()
}

/// `header | nonce | sealed(plain)`, authenticated with `aad`.
pub fn seal(cipher: &Cipher, header: &[u8], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 seals any length shoal sends");
    let mut out = Vec::with_capacity(header.len() + NONCE + sealed.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what `seal` made, given what follows its header (`nonce | ciphertext + tag`)
/// and the same `aad`; None if it is too short, altered, or sealed otherwise.
pub fn open(cipher: &Cipher, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_associated_data() {
        let (a, b) = (cipher(&[1; 32]).unwrap(), cipher(&[2; 32]).unwrap());
        let frame = seal(&a, b"HDR", b"HDR:place", b"hush");
        assert_eq!(&frame[..3], b"HDR");
        assert_eq!(frame.len(), 3 + OVERHEAD + 4);
        assert_eq!(open(&a, b"HDR:place", &frame[3..]).unwrap(), b"hush");
        assert!(open(&a, b"HDR:elsewhere", &frame[3..]).is_none());
        assert!(open(&b, b"HDR:place", &frame[3..]).is_none());
        assert!(open(&a, b"HDR:place", &frame[3..20]).is_none());
        assert!(cipher(&[0; 16]).is_none());
    }
}

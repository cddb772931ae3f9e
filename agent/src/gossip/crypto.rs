//! Sealing gossip: every datagram and push/pull frame is XChaCha20-Poly1305 under a key
//! from the managers' ring. The frame names its key, so a rotation never splits the
//! cluster; anything not sealed under a key in the ring is dropped and counted.
//!
//! Frame: "SHG1" | key id (u32, big endian) | nonce (24 bytes) | ciphertext + tag.
//! The magic and key id are authenticated as associated data.

use shoal_proto::NetworkKey;
use shoal_proto::sealing::{self, Cipher};

pub const MAGIC: &[u8; 4] = b"SHG1";
/// The magic and the key id, which the frame starts with.
const HEADER: usize = 4 + 4;
/// Bytes sealing adds to a payload.
pub const OVERHEAD: usize = HEADER + sealing::OVERHEAD;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a shoal gossip frame at all.
    Malformed,
    /// Sealed under a key this node does not hold (unknown id or failed authentication).
    BadKey,
    /// This node holds no key yet (it has just joined): it cannot tell good from bad.
    NoKeys,
}

/// The keys a node accepts, and the one it seals with.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(u32, Cipher)>,
    primary: u32,
}

impl Keyring {
    /// `primary` names the sealing key; when absent from `keys` the newest seals.
    pub fn new(keys: &[NetworkKey], primary: u32) -> Keyring {
        let keys: Vec<(u32, Cipher)> = keys
            .iter()
            .filter_map(|k| Some((k.id, sealing::cipher(&k.key)?)))
            .collect();
        let primary = if keys.iter().any(|(id, _)| *id == primary) {
            primary
        } else {
            keys.last().map(|(id, _)| *id).unwrap_or_default()
        };
        Keyring { keys, primary }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plain` under the primary key; None before the managers handed out a key.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let (id, cipher) = self.keys.iter().find(|(id, _)| *id == self.primary)?;
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(MAGIC);
        header[4..].copy_from_slice(&id.to_be_bytes());
        Some(sealing::seal(cipher, &header, &header, plain))
    }

    pub fn open(&self, frame: &[u8]) -> Result<Vec<u8>, Rejected> {
        if frame.len() < OVERHEAD || &frame[..4] != MAGIC {
            return Err(Rejected::Malformed);
        }
        if self.keys.is_empty() {
            return Err(Rejected::NoKeys);
        }
        let id = u32::from_be_bytes(frame[4..HEADER].try_into().expect("4 bytes"));
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| *k == id)
            .ok_or(Rejected::BadKey)?;
        sealing::open(cipher, &frame[..HEADER], &frame[HEADER..]).ok_or(Rejected::BadKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, byte: u8) -> NetworkKey {
        NetworkKey {
            id,
            key: vec![byte; 32],
            created_unix_nanos: 0,
        }
    }

    #[test]
    fn a_frame_opens_under_any_key_still_in_the_ring() {
        let old = Keyring::new(&[key(1, 7)], 1);
        let learning = Keyring::new(&[key(1, 7), key(2, 9)], 1);
        assert_eq!(
            old.open(&learning.seal(b"still key 1").unwrap()).unwrap(),
            b"still key 1"
        );
        let rotated = Keyring::new(&[key(1, 7), key(2, 9)], 2);
        let frame = old.seal(b"hello").unwrap();
        assert_eq!(rotated.open(&frame).unwrap(), b"hello");
        let newer = rotated.seal(b"again").unwrap();
        assert_eq!(old.open(&newer), Err(Rejected::BadKey));
    }

    #[test]
    fn wrong_key_tampering_and_garbage_are_rejected() {
        let ring = Keyring::new(&[key(1, 7)], 1);
        let impostor = Keyring::new(&[key(1, 8)], 1);
        let forged = impostor.seal(b"endpoint").unwrap();
        assert_eq!(ring.open(&forged), Err(Rejected::BadKey));
        let mut tampered = ring.seal(b"endpoint").unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(ring.open(&tampered), Err(Rejected::BadKey));
        assert_eq!(ring.open(b"garbage"), Err(Rejected::Malformed));
        assert_eq!(ring.open(&[0u8; 200]), Err(Rejected::Malformed));
        assert!(Keyring::default().seal(b"x").is_none());
        // A node that has just joined holds no key: it cannot call a frame bad.
        assert_eq!(
            Keyring::default().open(&ring.seal(b"early").unwrap()),
            Err(Rejected::NoKeys)
        );
    }
}

//! Object IDs in Swarm's format: 25 lowercase base-36 characters.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Random base-36 string of `len` characters.
pub fn random_base36(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new object ID.
pub fn new_id() -> String {
    random_base36(25)
}

/// Big-endian bytes rendered in base 36, left-padded with '0' to `width`.
pub fn bytes_to_base36(bytes: &[u8], width: usize) -> String {
    let mut digits = Vec::new();
    let mut num: Vec<u8> = bytes.to_vec();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for byte in &mut num {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 36) as u8;
            rem = acc % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("alphabet is ascii")
}

/// The first 12 characters, as the docker CLI shows IDs.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_swarm_shape() {
        let id = new_id();
        assert_eq!(id.len(), 25);
        assert!(id.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(new_id(), id);
    }

    #[test]
    fn base36_encodes_numbers() {
        assert_eq!(bytes_to_base36(&[0x01, 0x00], 0), "74"); // 256 = 7*36 + 4
        assert_eq!(bytes_to_base36(&[35], 3), "00z");
        assert_eq!(bytes_to_base36(&[0], 2), "00");
    }
}

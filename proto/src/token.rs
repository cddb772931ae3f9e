//! Join tokens: `SWMTKN-1-<digest of the CA certificate>-<secret>`, as in Swarm. The digest
//! lets a joining node check the manager's CA before it trusts anything the manager says;
//! the secret proves the node may join, and which role it gets.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::ids::{bytes_to_base36, random_base36};

const PREFIX: &str = "SWMTKN";
const TOKEN_VERSION: &str = "1";
/// A SHA-256 digest in base 36 never needs more than 50 characters.
pub const DIGEST_LEN: usize = 50;
pub const SECRET_LEN: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_digest: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "invalid join token: expected the form SWMTKN-1-<50-character CA digest>-<25-character secret>; {0}. Copy the whole token printed by `shoal swarm join-token worker` on a manager"
    )]
    Malformed(String),
}

impl JoinToken {
    /// A fresh token for the CA whose DER certificate is given.
    pub fn generate(ca_cert_der: &[u8]) -> Self {
        JoinToken {
            ca_digest: ca_digest(ca_cert_der),
            secret: random_base36(SECRET_LEN),
        }
    }
}

/// Digest of a CA certificate as it appears in join tokens.
pub fn ca_digest(ca_cert_der: &[u8]) -> String {
    bytes_to_base36(&Sha256::digest(ca_cert_der), DIGEST_LEN)
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{TOKEN_VERSION}-{}-{}",
            self.ca_digest, self.secret
        )
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| TokenError::Malformed(why.to_string());
        let s = s.trim();
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 4 {
            return Err(bad(&format!(
                "it has {} dash-separated parts, not 4",
                parts.len()
            )));
        }
        if parts[0] != PREFIX {
            return Err(bad(&format!("it starts with {:?}, not SWMTKN", parts[0])));
        }
        if parts[1] != TOKEN_VERSION {
            return Err(bad(&format!(
                "token version {:?} is not supported",
                parts[1]
            )));
        }
        let base36 = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        };
        if parts[2].len() != DIGEST_LEN || !base36(parts[2]) {
            return Err(bad("the CA digest is not 50 base-36 characters"));
        }
        if parts[3].len() != SECRET_LEN || !base36(parts[3]) {
            return Err(bad("the secret is not 25 base-36 characters"));
        }
        Ok(JoinToken {
            ca_digest: parts[2].to_string(),
            secret: parts[3].to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = JoinToken::generate(b"some ca");
        let parsed: JoinToken = t.to_string().parse().unwrap();
        assert_eq!(parsed, t);
        assert!(t.to_string().starts_with("SWMTKN-1-"));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let good = JoinToken::generate(b"ca").to_string();
        for (token, why) in [
            ("nonsense", "parts"),
            (&good.replace("SWMTKN", "XXXXXX"), "starts with"),
            (&good.replacen("-1-", "-2-", 1), "version"),
            (&good[..good.len() - 1], "secret"),
            (&good.replacen("SWMTKN-1-", "SWMTKN-1-A", 1), "digest"),
        ] {
            let err = token.parse::<JoinToken>().unwrap_err().to_string();
            assert!(err.contains(why), "{token}: {err}");
        }
    }

    #[test]
    fn digest_depends_on_ca() {
        assert_ne!(ca_digest(b"a"), ca_digest(b"b"));
        assert_eq!(ca_digest(b"a").len(), DIGEST_LEN);
    }
}

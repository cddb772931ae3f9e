//! Encryption at rest: every value the Raft database holds (log entries, objects,
//! snapshots, vote and markers) is sealed with the manager's data key, XChaCha20-Poly1305
//! with a fresh nonce each time, bound to where it is stored (its table and key) so no
//! value can be moved to another place unnoticed. Secrets, the CA key and the gossip keys
//! are in those values: none of them reaches the disk in the clear.
//!
//! The data key lives in `raft-key.json` beside the database. As in Swarm, without
//! autolock it is kept there as it is (whoever reads the disk can read the key file too:
//! what this buys is that copies of the database alone, and freed pages, say nothing).
//!
//! Sealed value: "SHR1" | nonce (24 bytes) | ciphertext + tag; the magic and the place
//! are the associated data.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_proto::sealing::{self, Cipher};

use super::{StorageError, io_err};

const MAGIC: &[u8; 4] = b"SHR1";
/// The key file, beside raft.redb.
pub const KEY_FILE: &str = "raft-key.json";

/// The key every value of the Raft database is sealed with.
#[derive(Clone)]
pub struct DataKey {
    cipher: Cipher,
    /// Kept to seal it again when the lock changes.
    bytes: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The operator's key with autolock: it seals each manager's data key (and its TLS key),
/// so a manager's disk alone opens nothing. Written as Swarm writes it: SWMKEY-1-<base64>.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey([u8; 32]);

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

const UNLOCK_PREFIX: &str = "SWMKEY-1-";

impl UnlockKey {
    pub fn generate() -> UnlockKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        UnlockKey(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<UnlockKey> {
        Some(UnlockKey(bytes.try_into().ok()?))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads SWMKEY-1-...; what is wrong with anything else, said plainly.
    pub fn parse(text: &str) -> Result<UnlockKey, String> {
        let text = text.trim();
        let body = text.strip_prefix(UNLOCK_PREFIX).ok_or_else(|| {
            "invalid key: an unlock key starts with SWMKEY-1- (see `swarm unlock-key` on an unlocked manager)".to_string()
        })?;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body.trim_end_matches('='))
            .ok()
            .and_then(|b| UnlockKey::from_bytes(&b))
            .ok_or_else(|| "invalid key: the unlock key is damaged (it is SWMKEY-1- and 43 characters of base64)".to_string())
    }

    pub fn text(&self) -> String {
        format!(
            "{UNLOCK_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }
}

/// Why the data key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Sealed with an unlock key, and none was given.
    #[error(
        "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it."
    )]
    Locked,
    /// The unlock key given does not open it.
    #[error(
        "invalid key: this is not the swarm's current unlock key (after a rotation, the newest one opens it)"
    )]
    WrongKey,
    #[error("{0}")]
    Other(String),
}

/// What `raft-key.json` holds: the data key as it is, or sealed with the unlock key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    /// The data key, base64 (without autolock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_key: Option<String>,
    /// The data key sealed with the unlock key, base64 (with autolock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_data_key: Option<String>,
}

/// Seals for `place`: MAGIC | nonce | ciphertext, the magic and the place authenticated.
fn seal_raw(cipher: &Cipher, place: &str, plain: &[u8]) -> Vec<u8> {
    let aad = [MAGIC.as_slice(), place.as_bytes()].concat();
    sealing::seal(cipher, MAGIC, &aad, plain)
}

fn open_raw(cipher: &Cipher, place: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let sealed = bytes.strip_prefix(MAGIC.as_slice())?;
    let aad = [MAGIC.as_slice(), place.as_bytes()].concat();
    sealing::open(cipher, &aad, sealed)
}

impl UnlockKey {
    fn cipher(&self) -> Cipher {
        sealing::cipher(&self.0).expect("32 bytes")
    }

    /// Seals `plain` (a key of this node) for `place`.
    pub fn seal(&self, place: &str, plain: &[u8]) -> Vec<u8> {
        seal_raw(&self.cipher(), place, plain)
    }

    /// Opens what `seal` made for `place`; WrongKey for anything else.
    pub fn open(&self, place: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        open_raw(&self.cipher(), place, sealed).ok_or(KeyError::WrongKey)
    }
}

impl DataKey {
    fn from_bytes(bytes: &[u8]) -> Option<DataKey> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(DataKey {
            cipher: sealing::cipher(&bytes)?,
            bytes,
        })
    }

    /// Serialises `value` and seals it for `place` (its table and key).
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        place: &str,
        value: &T,
    ) -> Result<Vec<u8>, StorageError> {
        let plain = serde_json::to_vec(value).map_err(io_err)?;
        Ok(seal_raw(&self.cipher, place, &plain))
    }

    /// Opens a value sealed for `place`; anything else (another key, a moved or altered
    /// value, an unsealed one) is an error that says so.
    pub fn open<T: DeserializeOwned>(&self, place: &str, bytes: &[u8]) -> Result<T, StorageError> {
        let plain = open_raw(&self.cipher, place, bytes).ok_or_else(|| {
            io_err(format!(
                "the Raft database's value at {place} does not open with this manager's data key: the database and {KEY_FILE} do not belong together, or the file was altered"
            ))
        })?;
        serde_json::from_slice(&plain).map_err(io_err)
    }
}

fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

const DATA_KEY_PLACE: &str = "raft-key.json/data_key";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str, path: &Path) -> Result<Vec<u8>, KeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|_| KeyError::Other(format!("{} is damaged: not base64", path.display())))
}

fn read_key_file(path: &Path) -> Result<Option<KeyFile>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KeyError::Other(format!("{} is not a key file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Other(format!("reading {}: {e}", path.display()))),
    }
}

/// Whether the data key in `state_dir` is sealed with an unlock key.
pub fn is_locked(state_dir: &Path) -> Result<bool, KeyError> {
    Ok(read_key_file(&key_path(state_dir))?.is_some_and(|f| f.sealed_data_key.is_some()))
}

/// The manager's data key: read from `state_dir` (opened with `unlock` when it is
/// sealed), or made there (with a fresh database) when there is none; and the unlock
/// key the file is sealed with (None: kept as it is). A database without its key file
/// is refused rather than replaced.
pub fn load_or_create(
    state_dir: &Path,
    unlock: Option<&UnlockKey>,
) -> Result<(DataKey, Option<UnlockKey>), KeyError> {
    let path = key_path(state_dir);
    let damaged = || KeyError::Other(format!("{} holds no valid data key", path.display()));
    match read_key_file(&path)? {
        Some(KeyFile {
            sealed_data_key: Some(sealed),
            ..
        }) => {
            let unlock = unlock.ok_or(KeyError::Locked)?;
            let bytes = unlock.open(DATA_KEY_PLACE, &unb64(&sealed, &path)?)?;
            let key = DataKey::from_bytes(&bytes).ok_or_else(damaged)?;
            Ok((key, Some(unlock.clone())))
        }
        Some(KeyFile {
            data_key: Some(plain),
            ..
        }) => Ok((
            DataKey::from_bytes(&unb64(&plain, &path)?).ok_or_else(damaged)?,
            None,
        )),
        Some(_) => Err(damaged()),
        None => {
            if state_dir.join("raft.redb").exists() {
                return Err(KeyError::Other(format!(
                    "{} is missing, so the Raft database beside it cannot be read: restore the data directory whole (a backup includes the key file)",
                    path.display()
                )));
            }
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = DataKey::from_bytes(&bytes).expect("32 bytes");
            store(state_dir, &key, unlock).map_err(KeyError::Other)?;
            Ok((key, unlock.cloned()))
        }
    }
}

/// Writes the data key to `state_dir`: sealed with `unlock`, or as it is without one.
pub fn store(state_dir: &Path, key: &DataKey, unlock: Option<&UnlockKey>) -> Result<(), String> {
    let file = match unlock {
        Some(u) => KeyFile {
            version: 1,
            data_key: None,
            sealed_data_key: Some(b64(&u.seal(DATA_KEY_PLACE, &key.bytes))),
        },
        None => KeyFile {
            version: 1,
            data_key: Some(b64(&key.bytes)),
            sealed_data_key: None,
        },
    };
    write_private(
        &key_path(state_dir),
        &serde_json::to_vec(&file).expect("serialisable"),
    )
}

/// Writes a file only root reads, atomically (a crash leaves the old one or the new).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_with_their_key_and_at_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = load_or_create(dir.path(), None).unwrap();
        let sealed = key.seal("objects/Secret/x", "Seven of Nine").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("Seven"));
        let opened: String = key.open("objects/Secret/x", &sealed).unwrap();
        assert_eq!(opened, "Seven of Nine");
        // Moved to another place, or under another key: refused, saying why.
        let moved = key.open::<String>("objects/Secret/y", &sealed).unwrap_err();
        assert!(moved.to_string().contains("does not open"), "{moved}");
        let other = tempfile::tempdir().unwrap();
        let (other_key, _) = load_or_create(other.path(), None).unwrap();
        assert!(
            other_key
                .open::<String>("objects/Secret/x", &sealed)
                .is_err()
        );
        // The same key comes back from the file.
        let (again, _) = load_or_create(dir.path(), None).unwrap();
        assert_eq!(
            again.open::<String>("objects/Secret/x", &sealed).unwrap(),
            "Seven of Nine"
        );
    }

    #[test]
    fn a_database_without_its_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("raft.redb"), b"").unwrap();
        let err = load_or_create(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("raft-key.json is missing"), "{err}");
    }

    #[test]
    fn a_sealed_data_key_opens_with_its_unlock_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = load_or_create(dir.path(), None).unwrap();
        let sealed = key.seal("p", "v").unwrap();
        let unlock = UnlockKey::generate();
        store(dir.path(), &key, Some(&unlock)).unwrap();
        assert!(is_locked(dir.path()).unwrap());
        let file = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(
            !file.contains(&b64(&key.bytes)),
            "the key is not kept as it is"
        );
        assert!(matches!(
            load_or_create(dir.path(), None),
            Err(KeyError::Locked)
        ));
        let other = UnlockKey::generate();
        assert!(matches!(
            load_or_create(dir.path(), Some(&other)),
            Err(KeyError::WrongKey)
        ));
        // A wrong key changes nothing: the right one still opens it.
        let (opened, sealed_with) = load_or_create(dir.path(), Some(&unlock)).unwrap();
        assert_eq!(sealed_with, Some(unlock.clone()));
        assert_eq!(opened.open::<String>("p", &sealed).unwrap(), "v");
        // Unlocked again, it opens without a key.
        store(dir.path(), &opened, None).unwrap();
        assert!(!is_locked(dir.path()).unwrap());
        assert!(load_or_create(dir.path(), None).is_ok());
    }

    #[test]
    fn unlock_keys_read_as_swarm_writes_them() {
        let k = UnlockKey::generate();
        let text = k.text();
        assert!(
            text.starts_with("SWMKEY-1-") && text.len() == 9 + 43,
            "{text}"
        );
        assert_eq!(UnlockKey::parse(&format!(" {text}\n")).unwrap(), k);
        assert!(
            UnlockKey::parse("SWMTKN-1-abc")
                .unwrap_err()
                .contains("starts with SWMKEY-1-")
        );
        assert!(
            UnlockKey::parse("SWMKEY-1-abc")
                .unwrap_err()
                .contains("damaged")
        );
    }
}

//! What a node keeps on disk about its swarm membership, under <data-dir>/swarm: the
//! identity and role, the managers it knows, its certificates (the key readable by root
//! only), and for managers the Raft database.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_manager::state::raft::at_rest::{self, KeyError, UnlockKey};
use shoal_proto::NodeRole;
use shoal_proto::tls::NodeTls;

use crate::error::{IoContext, NodeError, Result};

/// The TLS key sealed with the unlock key, in place of node.key, under autolock.
const SEALED_KEY: &str = "node.key.sealed";
/// What the sealed TLS key is bound to.
const KEY_PLACE: &str = "certificates/node.key";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwarmState {
    pub node_id: String,
    pub cluster_id: String,
    pub manager: bool,
    pub raft_id: u64,
    /// The node's address as other nodes reach it (no port).
    pub advertise_ip: String,
    pub control_port: u16,
    /// Where the control listener binds (managers).
    pub listen_addr: String,
    pub manager_addrs: Vec<String>,
}

impl SwarmState {
    pub fn role(&self) -> NodeRole {
        if self.manager {
            NodeRole::Manager
        } else {
            NodeRole::Worker
        }
    }

    pub fn control_addr(&self) -> String {
        format!("{}:{}", self.advertise_ip, self.control_port)
    }
}

pub struct SwarmDir(pub PathBuf);

impl SwarmDir {
    pub fn new(data_dir: &Path) -> Self {
        SwarmDir(data_dir.join("swarm"))
    }

    fn state_file(&self) -> PathBuf {
        self.0.join("state.json")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.0.join("certificates")
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.0.join("raft")
    }

    /// The node's membership, without its keys (readable while the node is locked).
    pub fn load_state(&self) -> Result<Option<SwarmState>> {
        let file = self.state_file();
        if !file.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&file).io(|| format!("reading {}", file.display()))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            NodeError::Corrupt(format!(
                "{} is corrupt ({e}); `shoal swarm leave --force` resets it",
                file.display()
            ))
        })
    }

    /// Whether the node's keys are sealed with the swarm's unlock key (autolock): it
    /// serves nothing until `swarm unlock`.
    pub fn is_locked(&self) -> bool {
        self.certs_dir().join(SEALED_KEY).exists()
            || at_rest::is_locked(&self.raft_dir()).unwrap_or(false)
    }

    /// Checks `unlock` opens this node's sealed keys (the Raft data key and the TLS key),
    /// changing nothing.
    pub fn check_unlock(&self, unlock: &UnlockKey) -> std::result::Result<(), KeyError> {
        if at_rest::is_locked(&self.raft_dir())? {
            at_rest::load_or_create(&self.raft_dir(), Some(unlock))?;
        }
        let sealed = self.certs_dir().join(SEALED_KEY);
        if let Ok(bytes) = std::fs::read(&sealed) {
            unlock.open(KEY_PLACE, &bytes)?;
        }
        Ok(())
    }

    /// Membership and certificates; a sealed TLS key is opened with `unlock`.
    pub fn load(&self, unlock: Option<&UnlockKey>) -> Result<Option<(SwarmState, NodeTls)>> {
        let Some(state) = self.load_state()? else {
            return Ok(None);
        };
        let read = |f: &str| {
            std::fs::read_to_string(self.certs_dir().join(f)).io(|| {
                format!(
                    "reading certificate file {f} in {}",
                    self.certs_dir().display()
                )
            })
        };
        let key_pem = match std::fs::read(self.certs_dir().join(SEALED_KEY)) {
            Ok(sealed) => {
                let unlock =
                    unlock.ok_or_else(|| NodeError::Locked(KeyError::Locked.to_string()))?;
                let plain = unlock
                    .open(KEY_PLACE, &sealed)
                    .map_err(|e| NodeError::Locked(e.to_string()))?;
                String::from_utf8(plain)
                    .map_err(|_| NodeError::Corrupt(format!("{SEALED_KEY} is damaged")))?
            }
            Err(_) => read("node.key")?,
        };
        let tls = NodeTls {
            ca_cert_pem: read("ca.crt")?,
            cert_pem: read("node.crt")?,
            key_pem,
        };
        Ok(Some((state, tls)))
    }

    /// Writes the TLS key: sealed with `unlock` (autolock), or as it is; the other form
    /// is removed once the new one is written.
    pub fn save_key(&self, key_pem: &str, unlock: Option<&UnlockKey>) -> Result<()> {
        let (plain, sealed) = (
            self.certs_dir().join("node.key"),
            self.certs_dir().join(SEALED_KEY),
        );
        let (write, bytes, remove) = match unlock {
            Some(u) => (&sealed, u.seal(KEY_PLACE, key_pem.as_bytes()), &plain),
            None => (&plain, key_pem.as_bytes().to_vec(), &sealed),
        };
        write_atomic(write, &bytes, 0o600)?;
        match std::fs::remove_file(remove) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).io(|| format!("removing {}", remove.display()))
            }
            _ => Ok(()),
        }
    }

    /// Writes state and certificates (the key sealed with `unlock` under autolock); each
    /// file is replaced atomically.
    pub fn save(
        &self,
        state: &SwarmState,
        tls: &NodeTls,
        unlock: Option<&UnlockKey>,
    ) -> Result<()> {
        self.save_certificates(tls, unlock)?;
        self.save_state(state)
    }

    /// Writes the trust roots, the certificate and its key, each file atomically.
    pub fn save_certificates(&self, tls: &NodeTls, unlock: Option<&UnlockKey>) -> Result<()> {
        std::fs::create_dir_all(self.certs_dir())
            .and_then(|()| {
                std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700))
            })
            .io(|| format!("creating {}", self.certs_dir().display()))?;
        write_atomic(
            &self.certs_dir().join("ca.crt"),
            tls.ca_cert_pem.as_bytes(),
            0o644,
        )?;
        write_atomic(
            &self.certs_dir().join("node.crt"),
            tls.cert_pem.as_bytes(),
            0o644,
        )?;
        self.save_key(&tls.key_pem, unlock)
    }

    pub fn save_state(&self, state: &SwarmState) -> Result<()> {
        write_atomic(
            &self.state_file(),
            &serde_json::to_vec_pretty(state).expect("the state serializes"),
            0o600,
        )
    }

    /// Forgets the swarm entirely (leave).
    pub fn wipe(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.0) {
            Err(cause) if cause.kind() != std::io::ErrorKind::NotFound => Err(NodeError::Io {
                what: format!("removing {}", self.0.display()),
                cause,
            }),
            _ => Ok(()),
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .io(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).io(|| format!("replacing {}", path.display()))
}

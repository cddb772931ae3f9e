//! The container settings an engine gives a task (Mounts, DNSConfig, LogDriver,
//! Platforms, ...), as the Engine API spells them in a service spec, and their reading
//! into shoal's spec. Parts of them shoal lacks are refused by name unless zero.

use std::collections::HashMap;

use serde::Deserialize;
use shoal_proto as pb;

use super::request::{Unsupported, null_default, refuse_set};
use crate::error::{Invalid, Result};
use crate::flags::one_of;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(default, deserialize_with = "null_default")]
    target: String,
    #[serde(default, deserialize_with = "null_default")]
    source: String,
    #[serde(default, deserialize_with = "null_default")]
    r#type: String,
    #[serde(default, deserialize_with = "null_default")]
    read_only: bool,
    #[serde(default, deserialize_with = "null_default")]
    consistency: String,
    bind_options: Option<BindOptions>,
    volume_options: Option<VolumeOptions>,
    tmpfs_options: Option<TmpfsOptions>,
    image_options: Unsupported,
    cluster_options: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BindOptions {
    #[serde(default, deserialize_with = "null_default")]
    propagation: String,
    #[serde(default, deserialize_with = "null_default")]
    non_recursive: bool,
    create_mountpoint: Unsupported,
    read_only_non_recursive: Unsupported,
    read_only_force_recursive: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeOptions {
    #[serde(default, deserialize_with = "null_default")]
    no_copy: bool,
    #[serde(default, deserialize_with = "null_default")]
    labels: HashMap<String, String>,
    driver_config: Option<Driver>,
    subpath: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TmpfsOptions {
    #[serde(default, deserialize_with = "null_default")]
    size_bytes: i64,
    #[serde(default, deserialize_with = "null_default")]
    mode: u32,
    options: Unsupported,
}

/// A log driver or a volume driver: a name and its options.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Driver {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    options: HashMap<String, String>,
}

impl Driver {
    pub fn into_proto(self) -> pb::Driver {
        pb::Driver {
            name: self.name,
            options: self.options,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DnsConfig {
    #[serde(default, deserialize_with = "null_default")]
    nameservers: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    search: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    options: Vec<String>,
}

impl DnsConfig {
    pub fn into_proto(self) -> Option<pb::DnsConfig> {
        let dns = pb::DnsConfig {
            nameservers: self.nameservers,
            search: self.search,
            options: self.options,
        };
        (!dns.is_empty()).then_some(dns)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    #[serde(default, deserialize_with = "null_default")]
    architecture: String,
    #[serde(default, rename = "OS", deserialize_with = "null_default")]
    os: String,
}

impl Platform {
    pub fn into_proto(self) -> pb::Platform {
        pb::Platform {
            architecture: self.architecture,
            os: self.os,
        }
    }
}

impl Mount {
    /// TmpfsOptions.Options came with API 1.46.
    pub fn before_1_46(&mut self) {
        if let Some(t) = self.tmpfs_options.as_mut() {
            t.options = None;
        }
    }

    pub fn into_proto(self) -> Result<pb::Mount> {
        let at = format!("ContainerSpec.Mounts[{}]", self.target);
        refuse_set(&[
            (&format!("{at}.ImageOptions"), &self.image_options),
            (&format!("{at}.ClusterOptions"), &self.cluster_options),
        ])?;
        if self.r#type.is_empty() {
            return Err(Invalid::new(format!(
                "{at}.Type is missing: use bind, volume or tmpfs"
            )));
        }
        let kind = one_of::<pb::MountType>(&format!("{at}.Type"), &self.r#type)?;
        let bind = match self.bind_options {
            Some(b) => {
                refuse_set(&[
                    (
                        &format!("{at}.BindOptions.CreateMountpoint"),
                        &b.create_mountpoint,
                    ),
                    (
                        &format!("{at}.BindOptions.ReadOnlyNonRecursive"),
                        &b.read_only_non_recursive,
                    ),
                    (
                        &format!("{at}.BindOptions.ReadOnlyForceRecursive"),
                        &b.read_only_force_recursive,
                    ),
                ])?;
                Some(pb::BindOptions {
                    propagation: b.propagation,
                    non_recursive: b.non_recursive,
                })
            }
            None => None,
        };
        let volume = match self.volume_options {
            Some(v) => {
                refuse_set(&[(&format!("{at}.VolumeOptions.Subpath"), &v.subpath)])?;
                Some(pb::VolumeOptions {
                    no_copy: v.no_copy,
                    labels: v.labels,
                    driver: v.driver_config.map(Driver::into_proto),
                })
            }
            None => None,
        };
        let tmpfs = match self.tmpfs_options {
            Some(t) => {
                refuse_set(&[(&format!("{at}.TmpfsOptions.Options"), &t.options)])?;
                Some(pb::TmpfsOptions {
                    size_bytes: t.size_bytes,
                    mode: t.mode,
                })
            }
            None => None,
        };
        Ok(pb::Mount {
            r#type: kind as i32,
            source: self.source,
            target: self.target,
            read_only: self.read_only,
            consistency: self.consistency,
            bind,
            volume,
            tmpfs,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Privileges {
    credential_spec: Unsupported,
    #[serde(rename = "SELinuxContext")]
    selinux_context: Option<SeLinuxContext>,
    seccomp: Option<Seccomp>,
    #[serde(rename = "AppArmor")]
    app_armor: Option<AppArmor>,
    #[serde(default, deserialize_with = "null_default")]
    no_new_privileges: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SeLinuxContext {
    #[serde(default, deserialize_with = "null_default")]
    disable: bool,
    #[serde(default, deserialize_with = "null_default")]
    user: String,
    #[serde(default, deserialize_with = "null_default")]
    role: String,
    #[serde(default, deserialize_with = "null_default")]
    r#type: String,
    #[serde(default, deserialize_with = "null_default")]
    level: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Seccomp {
    #[serde(default, deserialize_with = "null_default")]
    mode: String,
    /// Go's []byte: base64 in JSON.
    #[serde(default, deserialize_with = "null_default")]
    profile: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AppArmor {
    #[serde(default, deserialize_with = "null_default")]
    mode: String,
}

impl Privileges {
    /// Seccomp, AppArmor and NoNewPrivileges came with API 1.44.
    pub fn before_1_44(&mut self) {
        self.seccomp = None;
        self.app_armor = None;
        self.no_new_privileges = false;
    }

    /// None when nothing is asked (what clients send by default).
    pub fn into_proto(self) -> Result<Option<pb::Privileges>> {
        use base64::Engine;
        refuse_set(&[(
            "ContainerSpec.Privileges.CredentialSpec (Windows only)",
            &self.credential_spec,
        )])?;
        let seccomp = self
            .seccomp
            .map(|s| (s.mode, s.profile))
            .unwrap_or_default();
        let profile = base64::engine::general_purpose::STANDARD
            .decode(seccomp.1.as_bytes())
            .map_err(|e| {
                Invalid::new(format!(
                    "ContainerSpec.Privileges.Seccomp.Profile: not base64 ({e}): send the profile's bytes as Go encodes []byte"
                ))
            })?;
        let p = pb::Privileges {
            selinux: self.selinux_context.map(|l| pb::SeLinuxContext {
                disable: l.disable,
                user: l.user,
                role: l.role,
                r#type: l.r#type,
                level: l.level,
            }),
            seccomp_mode: seccomp.0,
            seccomp_profile: profile,
            apparmor_mode: self.app_armor.map(|a| a.mode).unwrap_or_default(),
            no_new_privileges: self.no_new_privileges,
        };
        let nothing =
            p.security_opts().is_empty() && p.seccomp_mode.is_empty() && p.apparmor_mode.is_empty();
        Ok((!nothing).then_some(p))
    }
}

/// One resource limit of the container's processes (setrlimit).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    soft: i64,
    #[serde(default, deserialize_with = "null_default")]
    hard: i64,
}

impl Ulimit {
    pub fn into_proto(self) -> pb::Ulimit {
        pb::Ulimit {
            name: self.name,
            soft: self.soft,
            hard: self.hard,
        }
    }
}

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
        let empty =
            self.nameservers.is_empty() && self.search.is_empty() && self.options.is_empty();
        (!empty).then_some(pb::DnsConfig {
            nameservers: self.nameservers,
            search: self.search,
            options: self.options,
        })
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

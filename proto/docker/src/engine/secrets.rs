//! Secrets and configs as the Engine API spells them: the create and update bodies
//! (`POST /secrets/create`, `/configs/create`, `/{secrets,configs}/{id}/update`: Data in
//! base64) and a service's references to them (ContainerSpec.Secrets, .Configs).

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use shoal_proto as pb;

use super::engine_settings::Driver;
use super::request::{Unsupported, null_default};
use crate::error::{Invalid, Result};

/// A secret's or config's spec: `Driver` only for secrets (an external store, refused by
/// the managers unless empty).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct FileSpec {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    labels: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    data: String,
    driver: Option<Driver>,
    templating: Option<Driver>,
}

impl FileSpec {
    /// The name, labels and decoded data; the drivers.
    fn into_parts(self, word: &str) -> Result<(pb::Annotations, Vec<u8>, [Option<pb::Driver>; 2])> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|e| Invalid::new(format!("the {word}'s Data is not base64: {e}")))?;
        let annotations = pb::Annotations {
            name: self.name,
            labels: self.labels,
        };
        let drivers = [self.driver, self.templating].map(|d| d.map(Driver::into_proto));
        Ok((annotations, data, drivers))
    }

    pub fn into_secret(self) -> Result<pb::SecretSpec> {
        let (annotations, data, [driver, templating]) = self.into_parts("secret")?;
        Ok(pb::SecretSpec {
            annotations: Some(annotations),
            data,
            driver,
            templating,
        })
    }

    pub fn into_config(self) -> Result<pb::ConfigSpec> {
        let (annotations, data, [driver, templating]) = self.into_parts("config")?;
        if driver.is_some() {
            return Err(Invalid::new(
                "a config has no Driver: remove it from the request",
            ));
        }
        Ok(pb::ConfigSpec {
            annotations: Some(annotations),
            data,
            templating,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct FileTarget {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, rename = "UID", deserialize_with = "null_default")]
    uid: String,
    #[serde(default, rename = "GID", deserialize_with = "null_default")]
    gid: String,
    #[serde(default, deserialize_with = "null_default")]
    mode: u32,
}

impl FileTarget {
    fn into_proto(self) -> pb::FileTarget {
        pb::FileTarget {
            name: self.name,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SecretReference {
    file: Option<FileTarget>,
    #[serde(default, rename = "SecretID", deserialize_with = "null_default")]
    secret_id: String,
    #[serde(default, deserialize_with = "null_default")]
    secret_name: String,
}

impl SecretReference {
    pub fn into_proto(self) -> pb::SecretReference {
        pb::SecretReference {
            secret_id: self.secret_id,
            secret_name: self.secret_name,
            file: self.file.map(FileTarget::into_proto),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    file: Option<FileTarget>,
    /// A config used by the runtime itself (Windows credential specs).
    runtime: Unsupported,
    #[serde(default, rename = "ConfigID", deserialize_with = "null_default")]
    config_id: String,
    #[serde(default, deserialize_with = "null_default")]
    config_name: String,
}

impl ConfigReference {
    pub fn into_proto(self) -> Result<pb::ConfigReference> {
        // `Runtime: {}` marks a config the runtime itself reads (Windows credential
        // specs): an empty object is one too.
        if self.runtime.is_some() {
            return Err(Invalid::new(
                "ContainerSpec.Configs.Runtime (a config for the runtime, Windows only) is not supported by shoal: give the config a File target",
            ));
        }
        Ok(pb::ConfigReference {
            config_id: self.config_id,
            config_name: self.config_name,
            file: self.file.map(FileTarget::into_proto),
        })
    }
}

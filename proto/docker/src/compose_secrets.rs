//! Compose `secrets:` and `configs:`, top level and per service, as `docker stack deploy`
//! reads them: a declared one is made by the stack (`<stack>_<key>`, labelled with the
//! stack) from a file or an environment variable, read by the deploying client; an
//! external one must exist. A service's references name the declared key.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::Value;
use shoal_proto as pb;

use crate::error::Result;
use crate::invalid;

/// A top-level `secrets:` or `configs:` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDecl {
    file: Option<String>,
    environment: Option<String>,
    external: Option<super::compose::External>,
    name: Option<String>,
    labels: Option<super::compose::Pairs>,
    template_driver: Option<String>,
    driver: Option<Value>,
    driver_opts: Option<Value>,
    content: Option<String>,
}

/// A secret or config the stack makes, or one that must exist.
#[derive(Debug, Clone, PartialEq)]
pub enum StackFile {
    Owned {
        name: String,
        labels: BTreeMap<String, String>,
        source: FileSource,
    },
    External(String),
}

impl StackFile {
    pub fn name(&self) -> &str {
        match self {
            StackFile::Owned { name, .. } | StackFile::External(name) => name,
        }
    }
}

/// Where the deploying client reads the data from.
#[derive(Debug, Clone, PartialEq)]
pub enum FileSource {
    /// A path as written in the compose file (relative: to the file's directory).
    File(String),
    /// An environment variable of the deploying client.
    Environment(String),
    /// Inline `content:` (configs).
    Content(String),
}

/// A service's `secrets:` or `configs:` item: a key, or the long form.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum FileRef {
    Short(String),
    Long(Box<LongFileRef>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LongFileRef {
    source: String,
    target: Option<String>,
    uid: Option<Value>,
    gid: Option<Value>,
    mode: Option<Value>,
}

/// The declared entries of one kind ("secrets" or "configs"), by key, and the stack's
/// name and label, to turn declarations and references into specs.
pub(crate) struct Declared<'a> {
    pub word: &'static str,
    pub declared: &'a BTreeMap<String, FileDecl>,
    pub stack: &'a str,
    pub namespace: &'a BTreeMap<String, String>,
}

impl Declared<'_> {
    /// Every declaration as the stack will make or find it.
    pub fn plan(&self) -> Result<Vec<StackFile>> {
        self.declared
            .iter()
            .map(|(key, d)| self.one(key, d))
            .collect()
    }

    fn one(&self, key: &str, d: &FileDecl) -> Result<StackFile> {
        let path = format!("{}.{key}", self.word);
        for (field, set) in [
            ("driver", d.driver.is_some()),
            ("driver_opts", d.driver_opts.is_some()),
        ] {
            if set {
                return Err(invalid!(
                    "{path}.{field} is not supported by shoal: it keeps {} in its own encrypted store; remove it",
                    self.word
                ));
            }
        }
        if let Some(t) = d.template_driver.as_deref().filter(|t| *t != "none") {
            return Err(invalid!(
                "{path}.template_driver: {t:?} is not supported: shoal does not render templates; remove it"
            ));
        }
        if d.content.is_some() && self.word == "secrets" {
            return Err(invalid!(
                "{path}.content: a secret's data comes from a file or an environment variable, never the compose file"
            ));
        }
        let external = match &d.external {
            Some(super::compose::External::Flag(b)) => *b,
            Some(super::compose::External::Named { .. }) => true,
            None => false,
        };
        if external {
            let name = match &d.external {
                Some(super::compose::External::Named { name }) => name.clone(),
                _ => d.name.clone().unwrap_or_else(|| key.to_string()),
            };
            return Ok(StackFile::External(name));
        }
        let sources: Vec<FileSource> = [
            d.file.clone().map(FileSource::File),
            d.environment.clone().map(FileSource::Environment),
            d.content.clone().map(FileSource::Content),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [source] = <[FileSource; 1]>::try_from(sources).map_err(|_| {
            invalid!(
                "{path}: give exactly one of file or environment{}, or external: true",
                if self.word == "configs" {
                    ", content"
                } else {
                    ""
                }
            )
        })?;
        let mut labels = super::compose::pairs(d.labels.clone(), &format!("{path}.labels"))?;
        labels.extend(self.namespace.clone());
        Ok(StackFile::Owned {
            name: d
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{key}", self.stack)),
            labels,
            source,
        })
    }

    /// The cluster name of the declared `key`, for a service at `path`.
    fn cluster_name(&self, path: &str, key: &str) -> Result<String> {
        let d = self.declared.get(key).ok_or_else(|| {
            invalid!(
                "{path}: {} {key:?} is not declared under the top-level {}",
                &self.word[..self.word.len() - 1],
                self.word
            )
        })?;
        Ok(self.one(key, d)?.name().to_string())
    }

    /// A service's references: (the cluster name, the file it appears as).
    pub fn references(
        &self,
        path: &str,
        refs: Vec<FileRef>,
    ) -> Result<Vec<(String, pb::FileTarget)>> {
        let path = format!("{path}.{}", self.word);
        refs.into_iter()
            .map(|r| match r {
                FileRef::Short(key) => Ok((
                    self.cluster_name(&path, &key)?,
                    pb::FileTarget {
                        // docker stack deploy: the key, not the cluster name, is the file.
                        name: self.default_target(&key),
                        ..Default::default()
                    },
                )),
                FileRef::Long(l) => {
                    let id = |field: &str, v: Option<Value>| -> Result<String> {
                        match v {
                            None => Ok(String::new()),
                            Some(v) => super::compose::scalar(&v)
                                .ok_or_else(|| invalid!("{path}.{field}: give a number")),
                        }
                    };
                    let mode = match l.mode {
                        None => 0,
                        Some(Value::Number(n)) => n
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| {
                                invalid!("{path}.mode: give a file mode such as 0440")
                            })?,
                        Some(Value::String(s)) => u32::from_str_radix(&s, 8).map_err(|_| {
                            invalid!("{path}.mode: {s:?} is not an octal mode such as 0440")
                        })?,
                        Some(_) => {
                            return Err(invalid!("{path}.mode: give a file mode such as 0440"));
                        }
                    };
                    Ok((
                        self.cluster_name(&path, &l.source)?,
                        pb::FileTarget {
                            name: l.target.unwrap_or_else(|| self.default_target(&l.source)),
                            uid: id("uid", l.uid)?,
                            gid: id("gid", l.gid)?,
                            mode,
                        },
                    ))
                }
            })
            .collect()
    }

    /// Secrets appear as /run/secrets/<key>, configs as /<key>.
    fn default_target(&self, key: &str) -> String {
        if self.word == "configs" {
            format!("/{key}")
        } else {
            key.to_string()
        }
    }
}

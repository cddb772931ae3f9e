//! `shoal secret ...` and `shoal config ...`: one set of commands, as docker's two are
//! alike (a secret has a driver and never shows its data; a config shows it).

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use shoal_proto::{
    Annotations, ConfigSpec, Driver, Empty, ObjectRef, SecretSpec, UpdateConfigRequest,
    UpdateSecretRequest,
};

use shoal_docker::render::secret::{
    config_json, config_pretty, configs_table, secret_json, secret_pretty, secrets_table,
};
use shoal_node::client::{Target, daemon_error};

#[derive(Subcommand)]
pub enum FileCommand {
    /// Create one from a file, or from standard input with -
    Create {
        /// Labels (key=value)
        #[arg(short, long)]
        label: Vec<String>,
        /// Template driver (only none: shoal does not render templates)
        #[arg(long = "template-driver")]
        template_driver: Option<String>,
        /// Secret driver (secrets only; shoal keeps them in its own encrypted store)
        #[arg(short, long)]
        driver: Option<String>,
        name: String,
        /// A file, or - for standard input
        file: String,
    },
    /// List them
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more
    Inspect {
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change the labels (the data never changes)
    Update {
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        name: String,
    },
    /// Remove one or more
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Which of the two the command acts on.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Secret,
    Config,
}

fn labels(items: &[String]) -> anyhow::Result<std::collections::HashMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if k.is_empty() {
                bail!("invalid label {kv:?}: use key=value");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn read_data(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        data = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    }
    Ok(data)
}

pub async fn run(target: &Target, kind: Kind, cmd: FileCommand) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    let key = |id_or_name: String| ObjectRef { id_or_name };
    match cmd {
        FileCommand::Create {
            label,
            template_driver,
            driver,
            name,
            file,
        } => {
            let annotations = Some(Annotations {
                name,
                labels: labels(&label)?,
            });
            let data = read_data(&file)?;
            let named = |name: Option<String>| {
                name.map(|name| Driver {
                    name,
                    ..Default::default()
                })
            };
            let id = if kind == Kind::Secret {
                let spec = SecretSpec {
                    annotations,
                    data,
                    driver: named(driver),
                    templating: named(template_driver),
                };
                client
                    .create_secret(spec)
                    .await
                    .map_err(daemon_error)?
                    .into_inner()
                    .id
            } else {
                if driver.is_some() {
                    bail!("--driver is for secrets: configs have no driver");
                }
                let spec = ConfigSpec {
                    annotations,
                    data,
                    templating: named(template_driver),
                };
                client
                    .create_config(spec)
                    .await
                    .map_err(daemon_error)?
                    .into_inner()
                    .id
            };
            println!("{id}");
        }
        FileCommand::Ls { quiet } => {
            let text = match kind {
                Kind::Secret => {
                    let list = client.list_secrets(Empty {}).await.map_err(daemon_error)?;
                    secrets_table(&list.into_inner().secrets, quiet)
                }
                Kind::Config => {
                    let list = client.list_configs(Empty {}).await.map_err(daemon_error)?;
                    configs_table(&list.into_inner().configs, quiet)
                }
            };
            print!("{text}");
        }
        FileCommand::Inspect { pretty, names } => {
            let mut docs = Vec::new();
            for name in names {
                match kind {
                    Kind::Secret => {
                        let s = client.get_secret(key(name)).await.map_err(daemon_error)?;
                        let s = s.into_inner();
                        if pretty {
                            print!("{}", secret_pretty(&s));
                        }
                        docs.push(secret_json(&s));
                    }
                    Kind::Config => {
                        let c = client.get_config(key(name)).await.map_err(daemon_error)?;
                        let c = c.into_inner();
                        if pretty {
                            print!("{}", config_pretty(&c));
                        }
                        docs.push(config_json(&c));
                    }
                }
            }
            if !pretty {
                println!("{}", serde_json::to_string_pretty(&docs)?);
            }
        }
        FileCommand::Update {
            label_add,
            label_rm,
            name,
        } => {
            let added = labels(&label_add)?;
            let edit = |a: &mut Annotations| {
                a.labels.retain(|k, _| !label_rm.contains(k));
                a.labels.extend(added.clone());
            };
            match kind {
                Kind::Secret => {
                    let s = client.get_secret(key(name)).await.map_err(daemon_error)?;
                    let s = s.into_inner();
                    let mut spec = s.spec.unwrap_or_default();
                    edit(spec.annotations.get_or_insert_default());
                    client
                        .update_secret(UpdateSecretRequest {
                            id_or_name: s.id,
                            version: version_of(s.meta),
                            spec: Some(spec),
                        })
                        .await
                        .map_err(daemon_error)?;
                }
                Kind::Config => {
                    let c = client.get_config(key(name)).await.map_err(daemon_error)?;
                    let c = c.into_inner();
                    let mut spec = c.spec.unwrap_or_default();
                    edit(spec.annotations.get_or_insert_default());
                    client
                        .update_config(UpdateConfigRequest {
                            id_or_name: c.id,
                            version: version_of(c.meta),
                            spec: Some(spec),
                        })
                        .await
                        .map_err(daemon_error)?;
                }
            }
        }
        FileCommand::Rm { names } => {
            for name in names {
                match kind {
                    Kind::Secret => client.remove_secret(key(name.clone())).await,
                    Kind::Config => client.remove_config(key(name.clone())).await,
                }
                .map_err(daemon_error)?;
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn version_of(meta: Option<shoal_proto::Meta>) -> u64 {
    meta.and_then(|m| m.version).map(|v| v.index).unwrap_or(0)
}

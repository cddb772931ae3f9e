//! A stack's secrets and configs: the external ones checked, the stack's own read from
//! their file (relative to the compose file), environment variable or inline content,
//! and created, or their labels updated when they exist (their data never changes, as in
//! Swarm: a changed file is refused by the managers, naming it).

use std::path::Path;

use anyhow::{Context, bail};
use shoal_docker::compose_secrets::{FileSource, StackFile};
use shoal_proto::control_client::ControlClient;
use shoal_proto::{
    Annotations, ConfigSpec, Empty, SecretSpec, UpdateConfigRequest, UpdateSecretRequest,
};
use tonic::transport::Channel;

use shoal_node::client::daemon_error;

fn read(source: &FileSource, compose_dir: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(match source {
        FileSource::File(path) => {
            let path = compose_dir.join(path);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        FileSource::Environment(var) => std::env::var(var)
            .with_context(|| format!("environment variable {var} is not set"))?
            .into_bytes(),
        FileSource::Content(text) => text.clone().into_bytes(),
    })
}

/// Secrets first, then configs; every external one is checked before anything is made.
pub async fn make(
    client: &mut ControlClient<Channel>,
    secrets: &[StackFile],
    configs: &[StackFile],
    compose_dir: &Path,
) -> anyhow::Result<()> {
    let secret_names: Vec<String> = client
        .list_secrets(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .secrets
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    let config_names: Vec<String> = client
        .list_configs(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .configs
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    for (word, files, names) in [
        ("secret", secrets, &secret_names),
        ("config", configs, &config_names),
    ] {
        for f in files {
            if let StackFile::External(name) = f
                && !names.contains(name)
            {
                bail!(
                    "{word} not found: {name}: it is declared external; create it before deploying the stack"
                );
            }
        }
    }
    for (word, files, names) in [
        ("secret", secrets, &secret_names),
        ("config", configs, &config_names),
    ] {
        for f in files {
            let StackFile::Owned {
                name,
                labels,
                source,
            } = f
            else {
                continue;
            };
            let annotations = Some(Annotations {
                name: name.clone(),
                labels: labels.clone().into_iter().collect(),
            });
            let data = read(source, compose_dir)?;
            let exists = names.contains(name);
            println!(
                "{} {word} {name}",
                if exists { "Updating" } else { "Creating" }
            );
            let id_or_name = name.clone();
            match (word, exists) {
                ("secret", false) => client
                    .create_secret(SecretSpec {
                        annotations,
                        data,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                ("secret", true) => client
                    .update_secret(UpdateSecretRequest {
                        id_or_name,
                        version: 0,
                        spec: Some(SecretSpec {
                            annotations,
                            data,
                            ..Default::default()
                        }),
                    })
                    .await
                    .map(drop),
                (_, false) => client
                    .create_config(ConfigSpec {
                        annotations,
                        data,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                (_, true) => client
                    .update_config(UpdateConfigRequest {
                        id_or_name,
                        version: 0,
                        spec: Some(ConfigSpec {
                            annotations,
                            data,
                            ..Default::default()
                        }),
                    })
                    .await
                    .map(drop),
            }
            .map_err(daemon_error)?;
        }
    }
    Ok(())
}

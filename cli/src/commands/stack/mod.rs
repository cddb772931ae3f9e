//! `shoal stack deploy/ls/ps/services/rm`: compose files deployed as docker's `stack`
//! commands deploy them. A stack is the services and networks labelled
//! com.docker.stack.namespace=<name>, so stacks deployed by the docker CLI (through the
//! Engine API) and by shoal are the same thing.

use shoal_docker::compose;

mod files;

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use clap::Subcommand;
use shoal_proto::control_client::ControlClient;
use shoal_proto::{Empty, ListTasksRequest, NetworkRef, Service, ServiceRef};
use tonic::transport::Channel;

use super::service::update;
use compose::{NAMESPACE_LABEL, StackNetwork};
use shoal_docker::tables::{ps_table, services_table};
use shoal_docker::text::table;
use shoal_node::client::{Target, daemon_error};

#[derive(Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing stack
    Deploy {
        /// Path to a Compose file
        #[arg(short = 'c', long = "compose-file")]
        compose_file: String,
        /// Prune services that are no longer referenced
        #[arg(long)]
        prune: bool,
        stack: String,
    },
    /// List stacks
    #[command(alias = "list")]
    Ls,
    /// List the tasks in the stack
    Ps {
        /// Do not truncate output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Only display task IDs
        #[arg(short, long)]
        quiet: bool,
        stack: String,
    },
    /// List the services in the stack
    Services {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        stack: String,
    },
    /// Remove one or more stacks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
    },
}

fn stack_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(NAMESPACE_LABEL).map(String::as_str)
}

fn service_stack(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()?
        .annotations
        .as_ref()
        .and_then(|a| stack_of(&a.labels))
}

pub async fn run(target: &Target, cmd: StackCommand) -> anyhow::Result<()> {
    if let StackCommand::Deploy {
        compose_file,
        prune,
        stack,
    } = cmd
    {
        return deploy(target, &compose_file, &stack, prune).await;
    }
    let mut client = target.connect().await?;
    let services = client
        .list_services(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner();
    match cmd {
        StackCommand::Deploy { .. } => unreachable!("handled above"),
        StackCommand::Ls => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &services.services {
                if let Some(stack) = service_stack(s) {
                    *counts.entry(stack).or_default() += 1;
                }
            }
            let rows: Vec<Vec<String>> = counts
                .into_iter()
                .map(|(n, c)| vec![n.to_string(), c.to_string()])
                .collect();
            print!("{}", table(&["NAME", "SERVICES"], &rows));
        }
        StackCommand::Services { quiet, stack } => {
            let mine = |s: &Service| service_stack(s) == Some(stack.as_str());
            if !services.services.iter().any(mine) {
                eprintln!("Nothing found in stack: {stack}");
            } else if quiet {
                services
                    .services
                    .iter()
                    .filter(|s| mine(s))
                    .for_each(|s| println!("{}", s.id));
            } else {
                print!("{}", services_table(&services, mine));
            }
        }
        StackCommand::Ps {
            no_trunc,
            quiet,
            stack,
        } => {
            let mut tasks = Vec::new();
            let mut names = HashMap::new();
            for s in services
                .services
                .iter()
                .filter(|s| service_stack(s) == Some(stack.as_str()))
            {
                let resp = client
                    .list_tasks(ListTasksRequest {
                        service: s.id.clone(),
                        node: String::new(),
                    })
                    .await
                    .map_err(daemon_error)?
                    .into_inner();
                names.extend(resp.node_names);
                tasks.extend(resp.tasks);
            }
            if tasks.is_empty() {
                eprintln!("Nothing found in stack: {stack}");
            } else if quiet {
                for t in &tasks {
                    println!("{}", t.id);
                }
            } else {
                print!("{}", ps_table(&tasks, &names, no_trunc));
            }
        }
        StackCommand::Rm { stacks } => {
            let networks = client
                .list_networks(Empty {})
                .await
                .map_err(daemon_error)?
                .into_inner()
                .networks;
            for stack in &stacks {
                let doomed: Vec<&Service> = services
                    .services
                    .iter()
                    .filter(|s| service_stack(s) == Some(stack.as_str()))
                    .collect();
                let nets: Vec<_> = networks
                    .iter()
                    .filter(|n| {
                        n.spec
                            .as_ref()
                            .and_then(|s| s.annotations.as_ref())
                            .and_then(|a| stack_of(&a.labels))
                            == Some(stack.as_str())
                    })
                    .collect();
                if doomed.is_empty() && nets.is_empty() {
                    eprintln!("Nothing found in stack: {stack}");
                    continue;
                }
                for s in doomed {
                    remove_service(&mut client, s).await?;
                }
                for n in nets {
                    let name = n.name();
                    println!("Removing network {name}");
                    client
                        .remove_network(NetworkRef {
                            id_or_name: n.id.clone(),
                        })
                        .await
                        .map_err(daemon_error)?;
                }
            }
        }
    }
    Ok(())
}

async fn deploy(
    target: &Target,
    compose_file: &str,
    stack: &str,
    prune: bool,
) -> anyhow::Result<()> {
    // The file is read and checked whole before the daemon is contacted.
    let text =
        std::fs::read_to_string(compose_file).with_context(|| format!("reading {compose_file}"))?;
    let (plan, warnings) = compose::load(&text, stack, &|v| std::env::var(v).ok())
        .with_context(|| compose_file.to_string())?;
    for w in warnings {
        eprintln!("{w}");
    }
    if !plan.ignored.is_empty() {
        eprintln!("Ignoring unsupported options: {}", plan.ignored.join(", "));
    }
    let mut client = target.connect().await?;
    let existing = client
        .list_networks(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .networks;
    let exists = |name: &str| existing.iter().any(|n| n.name() == name);
    // External networks are checked before anything is created.
    for n in &plan.networks {
        if let StackNetwork::External(name) = n
            && !exists(name)
        {
            anyhow::bail!(
                "network {name:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
            );
        }
    }
    for n in plan.networks {
        if let StackNetwork::Owned(spec) = n {
            let name = spec
                .annotations
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default();
            if !exists(&name) {
                println!("Creating network {name}");
                client.create_network(spec).await.map_err(daemon_error)?;
            }
        }
    }
    let compose_dir = std::path::Path::new(compose_file)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    files::make(&mut client, &plan.secrets, &plan.configs, compose_dir).await?;
    let current = client
        .list_services(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .services;
    let wanted: Vec<String> = plan
        .services
        .iter()
        .map(|s| {
            s.annotations
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default()
        })
        .collect();
    for (spec, name) in plan.services.into_iter().zip(&wanted) {
        if let Some(svc) = current.iter().find(|s| s.name() == name) {
            println!("Updating service {name} (id: {})", svc.id);
            update(&mut client, svc, spec, false).await?;
        } else {
            println!("Creating service {name}");
            client.create_service(spec).await.map_err(daemon_error)?;
        }
    }
    if prune {
        for s in current
            .iter()
            .filter(|s| service_stack(s) == Some(stack) && !wanted.iter().any(|w| w == s.name()))
        {
            remove_service(&mut client, s).await?;
        }
    }
    Ok(())
}

async fn remove_service(client: &mut ControlClient<Channel>, s: &Service) -> anyhow::Result<()> {
    println!("Removing service {}", s.name());
    client
        .remove_service(ServiceRef {
            id_or_name: s.id.clone(),
        })
        .await
        .map_err(daemon_error)?;
    Ok(())
}

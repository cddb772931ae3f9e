//! `shoal service ...`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use shoal_proto::UpdateState;
use shoal_proto::control_client::ControlClient;
use shoal_proto::service_spec::Mode;
use shoal_proto::{
    Annotations, ContainerSpec, Empty, ListTasksRequest, Service, ServiceRef, ServiceSpec, Task,
    TaskSpec, TaskState, UpdateServiceRequest,
};
use tonic::transport::Channel;

use shoal_docker::container_flags::ContainerEdits;
use shoal_docker::flags::{self, CreateLists, SpecFlags, key_value, parse_port, parse_preference};
use shoal_docker::tables::{ps_table, services_table};
use shoal_node::client::{Target, daemon_error};

// Parsed once per run, so the flags' size does not matter (the whole command is boxed
// in main).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create a new service
    Create {
        #[arg(long)]
        name: Option<String>,
        /// Number of tasks
        #[arg(long, allow_negative_numbers = true, value_parser = flags::parse_count)]
        replicas: Option<u64>,
        /// Service mode (replicated, global, replicated-job or global-job)
        #[arg(long, default_value = "replicated")]
        mode: String,
        /// Number of job tasks to run concurrently (default 1; replicated-job mode)
        #[arg(long = "max-concurrent", value_parser = flags::parse_count)]
        max_concurrent: Option<u64>,
        /// Exit immediately instead of waiting for the service to converge
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        lists: CreateLists,
        #[command(flatten)]
        flags: SpecFlags,
        image: String,
        /// Command and arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List services
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the tasks of one or more services
    Ps {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Filter output (desired-state=running|shutdown|accepted, node=NODE)
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Display detailed information on one or more services
    Inspect {
        #[arg(long)]
        pretty: bool,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Scale one or multiple replicated services (SERVICE=REPLICAS)
    Scale {
        #[arg(short, long)]
        detach: bool,
        #[arg(required = true)]
        scales: Vec<String>,
    },
    /// Update a service
    Update {
        #[arg(long)]
        image: Option<String>,
        #[arg(long, allow_negative_numbers = true, value_parser = flags::parse_count)]
        replicas: Option<u64>,
        /// Number of job tasks to run concurrently (replicated-job mode)
        #[arg(long = "max-concurrent", value_parser = flags::parse_count)]
        max_concurrent: Option<u64>,
        /// Force update even if no changes require it
        #[arg(long)]
        force: bool,
        /// Revert to the previous specification
        #[arg(long)]
        rollback: bool,
        #[arg(short, long)]
        detach: bool,
        #[arg(long = "env-add")]
        env_add: Vec<String>,
        #[arg(long = "env-rm")]
        env_rm: Vec<String>,
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        #[arg(long = "constraint-add")]
        constraint_add: Vec<String>,
        #[arg(long = "constraint-rm")]
        constraint_rm: Vec<String>,
        #[arg(long = "placement-pref-add")]
        placement_pref_add: Vec<String>,
        #[arg(long = "publish-add")]
        publish_add: Vec<String>,
        /// Remove a published port by its target port
        #[arg(long = "publish-rm")]
        publish_rm: Vec<String>,
        /// Replace the command
        #[arg(long = "args")]
        args: Option<String>,
        #[command(flatten)]
        flags: SpecFlags,
        #[command(flatten)]
        edits: ContainerEdits,
        service: String,
    },
    /// Fetch the logs of a service's tasks
    Logs {
        /// Follow log output
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end of the logs ("all" for all)
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Do not include task IDs in output
        #[arg(long = "no-task-ids")]
        no_task_ids: bool,
        /// Show timestamps
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Show logs since a time (2026-12-07T10:00:00Z) or for a duration back (10m)
        #[arg(long)]
        since: Option<String>,
        service: String,
    },
    /// Revert changes to a service's configuration
    Rollback {
        #[arg(short, long)]
        detach: bool,
        service: String,
    },
    /// Remove one or more services
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

type Client = ControlClient<Channel>;

pub async fn run(target: &Target, cmd: ServiceCommand) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    match cmd {
        ServiceCommand::Create {
            name,
            replicas,
            mode,
            max_concurrent,
            detach,
            lists,
            flags,
            image,
            command,
        } => {
            let mut spec = ServiceSpec {
                annotations: Some(Annotations {
                    name: name.unwrap_or_default(),
                    ..Default::default()
                }),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image,
                        args: command,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(flags::mode(&mode, replicas, max_concurrent)?),
                ..Default::default()
            };
            lists.apply(&mut spec)?;
            flags.apply(&mut spec)?;
            let svc = client
                .create_service(spec)
                .await
                .map_err(daemon_error)?
                .into_inner();
            println!("{}", svc.id);
            if !detach {
                converge(&mut client, &svc.id).await?;
            }
        }
        ServiceCommand::Ls { quiet } => {
            let resp = client
                .list_services(Empty {})
                .await
                .map_err(daemon_error)?
                .into_inner();
            if quiet {
                resp.services.iter().for_each(|s| println!("{}", s.id));
                return Ok(());
            }
            print!("{}", services_table(&resp, |_| true));
        }
        ServiceCommand::Ps {
            quiet,
            no_trunc,
            filter,
            services,
        } => {
            let mut filters: HashMap<String, String> = HashMap::new();
            for f in &filter {
                let (k, v) = key_value(f, "filter")?;
                filters.insert(k, v);
            }
            let mut all = Vec::new();
            let mut names = HashMap::new();
            for s in &services {
                let resp = client
                    .list_tasks(ListTasksRequest {
                        service: s.clone(),
                        node: filters.get("node").cloned().unwrap_or_default(),
                    })
                    .await
                    .map_err(daemon_error)?
                    .into_inner();
                names.extend(resp.node_names);
                all.extend(resp.tasks);
            }
            if let Some(want) = filters.get("desired-state") {
                all.retain(|t| match want.as_str() {
                    "running" => t.desired_state() == TaskState::Running,
                    "shutdown" => t.desired_state() >= TaskState::Shutdown,
                    "accepted" => t.desired_state() == TaskState::Accepted,
                    _ => true,
                });
            }
            if quiet {
                for t in &all {
                    println!("{}", t.id);
                }
            } else {
                print!("{}", ps_table(&all, &names, no_trunc));
            }
        }
        ServiceCommand::Inspect { pretty, services } => {
            let mut found = Vec::new();
            for s in &services {
                found.push(get(&mut client, s).await?);
            }
            if pretty {
                for s in &found {
                    print!("{}", shoal_docker::render::service::pretty(s));
                }
            } else {
                let docs: Vec<_> = found
                    .iter()
                    .map(shoal_docker::render::service::engine_json)
                    .collect();
                println!("{}", serde_json::to_string_pretty(&docs)?);
            }
        }
        ServiceCommand::Scale { detach, scales } => {
            let mut scaled = Vec::new();
            for s in &scales {
                let (name, n) = s.split_once('=').ok_or_else(|| {
                    anyhow!("invalid scale specifier {s:?}: use SERVICE=REPLICAS")
                })?;
                let n = flags::parse_count(n)
                    .map_err(|e| anyhow!("invalid replicas value {n:?} for {name}: {e}"))?;
                let svc = get(&mut client, name).await?;
                let mut spec = svc.spec.clone().unwrap_or_default();
                match spec.mode {
                    Some(Mode::Replicated(ref mut r)) => r.replicas = n,
                    Some(Mode::ReplicatedJob(ref mut j)) => j.total_completions = n,
                    _ => bail!(
                        "scale can only be used with replicated or replicated-job mode ({name} is global)"
                    ),
                }
                update(&mut client, &svc, spec, false).await?;
                println!("{name} scaled to {n}");
                scaled.push(svc.id);
            }
            if !detach {
                for id in scaled {
                    converge(&mut client, &id).await?;
                }
            }
        }
        ServiceCommand::Update {
            image,
            replicas,
            max_concurrent,
            force,
            rollback,
            detach,
            env_add,
            env_rm,
            label_add,
            label_rm,
            constraint_add,
            constraint_rm,
            placement_pref_add,
            publish_add,
            publish_rm,
            args,
            flags,
            edits,
            service,
        } => {
            let svc = get(&mut client, &service).await?;
            if rollback {
                return do_rollback(&mut client, &svc, detach).await;
            }
            let mut spec = svc.spec.clone().unwrap_or_default();
            flags.apply(&mut spec)?;
            edits.apply(&mut spec)?;
            let task = spec.task.get_or_insert_default();
            let c = task.container.get_or_insert_default();
            if let Some(i) = image {
                c.image = i;
            }
            if let Some(a) = args {
                c.args = a.split_whitespace().map(str::to_string).collect();
            }
            c.env.retain(|e| {
                !env_rm
                    .iter()
                    .any(|k| e.split('=').next() == Some(k.as_str()))
            });
            for e in env_add {
                let key = e.split('=').next().unwrap_or("").to_string();
                c.env.retain(|x| x.split('=').next() != Some(key.as_str()));
                c.env.push(e);
            }
            let placement = task.placement.get_or_insert_default();
            placement.constraints.retain(|x| !constraint_rm.contains(x));
            placement.constraints.extend(constraint_add);
            for p in &placement_pref_add {
                placement.preferences.push(parse_preference(p)?);
            }
            if force {
                task.force_update += 1;
            }
            let labels = &mut spec.annotations.get_or_insert_default().labels;
            for k in &label_rm {
                labels.remove(k);
            }
            for kv in &label_add {
                let (k, v) = key_value(kv, "label")?;
                labels.insert(k, v);
            }
            let endpoint = spec.endpoint.get_or_insert_default();
            for t in &publish_rm {
                let target: u32 = t
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| anyhow!("invalid --publish-rm {t:?}: give the target port"))?;
                endpoint.ports.retain(|p| p.target_port != target);
            }
            for p in &publish_add {
                endpoint.ports.push(parse_port(p)?);
            }
            if let Some(n) = replicas {
                match spec.mode {
                    Some(Mode::Replicated(ref mut r)) => r.replicas = n,
                    Some(Mode::ReplicatedJob(ref mut j)) => j.total_completions = n,
                    _ => bail!("replicas can only be used with replicated or replicated-job mode"),
                }
            }
            if let Some(n) = max_concurrent {
                match spec.mode {
                    Some(Mode::ReplicatedJob(ref mut j)) => j.max_concurrent = n,
                    _ => bail!("max-concurrent can only be used with replicated-job mode"),
                }
            }
            update(&mut client, &svc, spec, false).await?;
            println!("{service}");
            if !detach {
                converge(&mut client, &svc.id).await?;
            }
        }
        ServiceCommand::Logs {
            follow,
            tail,
            no_task_ids,
            timestamps,
            since,
            service,
        } => {
            let since = match since {
                None => 0,
                Some(s) => shoal_docker::duration::parse_since(&s, shoal_proto::now_nanos())
                    .map_err(|e| anyhow!(e))?,
            };
            let tail: i64 = if tail == "all" {
                -1
            } else {
                tail.parse().map_err(|_| {
                    anyhow!("invalid --tail {tail:?}: a number of lines, or \"all\"")
                })?
            };
            let mut stream = client
                .service_logs(shoal_proto::ServiceLogsRequest {
                    service,
                    follow,
                    tail,
                    since_unix_nanos: since,
                })
                .await
                .map_err(daemon_error)?
                .into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(line)) => {
                        let name = if no_task_ids {
                            line.task_name
                                .rsplit_once('.')
                                .map(|(n, _)| n.to_string())
                                .unwrap_or(line.task_name)
                        } else {
                            line.task_name
                        };
                        // A reader that went away (`| head`) ends the command quietly.
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        // As the docker CLI prints them: the time first.
                        let time = if timestamps {
                            format!("{} ", shoal_proto::time::rfc3339(line.time_unix_nanos))
                        } else {
                            String::new()
                        };
                        if writeln!(
                            out,
                            "{time}{name}@{}    | {}",
                            line.node,
                            String::from_utf8_lossy(&line.data)
                        )
                        .is_err()
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(s) => eprintln!("error from daemon: {}", s.message()),
                }
            }
        }
        ServiceCommand::Rollback { detach, service } => {
            let svc = get(&mut client, &service).await?;
            do_rollback(&mut client, &svc, detach).await?;
        }
        ServiceCommand::Rm { services } => {
            for s in services {
                client
                    .remove_service(ServiceRef {
                        id_or_name: s.clone(),
                    })
                    .await
                    .map_err(daemon_error)?;
                println!("{s}");
            }
        }
    }
    Ok(())
}

async fn do_rollback(client: &mut Client, svc: &Service, detach: bool) -> anyhow::Result<()> {
    update(client, svc, ServiceSpec::default(), true).await?;
    println!("{}", svc.name());
    println!("rollback: manually requested rollback");
    if !detach {
        converge(client, &svc.id).await?;
    }
    Ok(())
}

async fn get(client: &mut Client, key: &str) -> anyhow::Result<Service> {
    Ok(client
        .get_service(ServiceRef {
            id_or_name: key.to_string(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner())
}

pub async fn update(
    client: &mut Client,
    svc: &Service,
    spec: ServiceSpec,
    rollback: bool,
) -> anyhow::Result<Service> {
    Ok(client
        .update_service(UpdateServiceRequest {
            id_or_name: svc.id.clone(),
            version: svc
                .meta
                .and_then(|m| m.version)
                .map(|v| v.index)
                .unwrap_or_default(),
            spec: (!rollback).then_some(spec),
            rollback,
        })
        .await
        .map_err(daemon_error)?
        .into_inner())
}

/// A job: waits until its current run has completed, printing its progress as it
/// changes.
async fn complete(client: &mut Client, service_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_mins(2);
    let mut reported = String::new();
    loop {
        let listed = client
            .list_services(Empty {})
            .await
            .map_err(daemon_error)?
            .into_inner();
        let svc = listed.services.iter().find(|s| s.id == service_id);
        let count = |m: &HashMap<String, u64>| m.get(service_id).copied().unwrap_or(0);
        let (running, completed) = (count(&listed.running), count(&listed.completed));
        let total = match svc.and_then(|s| s.spec.as_ref()?.mode.as_ref()) {
            Some(Mode::ReplicatedJob(j)) => j.total_completions,
            _ => count(&listed.desired) + completed,
        };
        let line = format!("job progress: {completed} out of {total} complete, {running} running");
        if line != reported {
            println!("{line}");
            reported = line;
        }
        if total > 0 && completed >= total && running == 0 {
            println!("job complete");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the job did not complete within 2 minutes ({completed} of {total}); see `shoal service ps {service_id}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until every wanted task of the service runs the current spec, and prints
/// docker's progress summary (for a job: until it has completed).
async fn converge(client: &mut Client, service_id: &str) -> anyhow::Result<()> {
    if get(client, service_id)
        .await?
        .spec
        .is_some_and(|s| s.is_job())
    {
        return complete(client, service_id).await;
    }
    let deadline = Instant::now() + Duration::from_mins(2);
    let mut stable_since: Option<Instant> = None;
    let mut reported = String::new();
    let mut rolled_back: Option<String> = None;
    let mut last_running: Option<usize> = None;
    loop {
        let svc = get(client, service_id).await?;
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: service_id.to_string(),
                node: String::new(),
            })
            .await
            .map_err(daemon_error)?
            .into_inner()
            .tasks;
        let wanted: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.desired_state() == TaskState::Running)
            .collect();
        let desired = match svc.spec.as_ref().and_then(|s| s.mode.as_ref()) {
            Some(Mode::Replicated(r)) => r.replicas as usize,
            _ => wanted.len(),
        };
        let want_spec = svc.spec.as_ref().and_then(|s| s.task.clone());
        let running = wanted
            .iter()
            .filter(|t| {
                t.status.as_ref().map(shoal_proto::TaskStatus::state) == Some(TaskState::Running)
                    && t.spec == want_spec
            })
            .count();
        let update = svc.update_status.clone().unwrap_or_default();
        match update.state() {
            UpdateState::Paused | UpdateState::RollbackPaused => bail!("{}", update.message),
            UpdateState::RollbackStarted
                if update.message.contains("due to") && rolled_back.is_none() =>
            {
                println!("rollback: {}", update.message);
                rolled_back = Some(update.message.clone());
            }
            _ => {}
        }
        let updating = matches!(
            update.state(),
            UpdateState::Updating | UpdateState::RollbackStarted
        );
        let settled = running == desired && wanted.len() == desired && !updating;
        if settled {
            let since = *stable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                println!("overall progress: {running} out of {desired} tasks");
                let mut ordered = wanted.clone();
                ordered.sort_by_key(|t| (t.slot, t.node_id.clone()));
                let lines: Vec<String> = ordered
                    .iter()
                    .map(|t| {
                        let slot = if t.slot > 0 {
                            t.slot.to_string()
                        } else {
                            shoal_proto::ids::short(&t.node_id).to_string()
                        };
                        format!("{slot}/{desired}: running")
                    })
                    .collect();
                for l in &lines {
                    println!("{l}");
                }
                println!("verify: Service converged");
                if let Some(why) = rolled_back {
                    bail!("{why}");
                }
                return Ok(());
            }
        } else {
            stable_since = None;
            if last_running != Some(running) && running < desired {
                println!("overall progress: {running} out of {desired} tasks");
                last_running = Some(running);
            }
            let pending: Vec<&str> = wanted
                .iter()
                .filter_map(|t| t.status.as_ref())
                .filter(|s| !s.err.is_empty())
                .map(|s| s.err.as_str())
                .collect();
            if let Some(reason) = pending.first()
                && *reason != reported
            {
                eprintln!("overall progress: {running} out of {desired} tasks: {reason}");
                reported = reason.to_string();
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the service did not converge within 2 minutes ({running} of {desired} tasks running); see `shoal service ps {}`",
                svc.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

use super::*;

const GETTING_STARTED: &str = include_str!("../../../examples/docker-compose.yml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn stack(text: &str) -> Stack {
    load(text, "getstartedlab", &no_env).unwrap().0
}

fn refusal(text: &str) -> String {
    format!("{:#}", load(text, "s", &no_env).unwrap_err())
}

#[test]
fn dockers_getting_started_file_converts_as_docker_converts_it() {
    let s = stack(GETTING_STARTED);
    let [StackNetwork::Owned(net)] = s.networks.as_slice() else {
        panic!("{:?}", s.networks)
    };
    let ann = net.annotations.as_ref().unwrap();
    assert_eq!(ann.name, "getstartedlab_webnet");
    assert_eq!(ann.labels[NAMESPACE_LABEL], "getstartedlab");
    assert_eq!(net.driver, "overlay");
    let [web] = s.services.as_slice() else {
        panic!()
    };
    let ann = web.annotations.as_ref().unwrap();
    assert_eq!(ann.name, "getstartedlab_web");
    assert_eq!(ann.labels[NAMESPACE_LABEL], "getstartedlab");
    assert_eq!(ann.labels[IMAGE_LABEL], "shoal/demo-web");
    assert_eq!(
        web.mode,
        Some(Mode::Replicated(pb::ReplicatedService { replicas: 5 }))
    );
    let task = web.task.as_ref().unwrap();
    let limits = task.resources.unwrap().limits.unwrap();
    assert_eq!(
        (limits.nano_cpus, limits.memory_bytes),
        (100_000_000, 50 * 1024 * 1024)
    );
    assert_eq!(
        task.restart.unwrap().condition,
        pb::RestartCondition::OnFailure as i32
    );
    assert_eq!(task.networks[0].target, "getstartedlab_webnet");
    assert_eq!(
        task.networks[0].aliases,
        ["web"],
        "the short name resolves inside the stack"
    );
    assert_eq!(
        task.container.as_ref().unwrap().labels[NAMESPACE_LABEL],
        "getstartedlab"
    );
    let port = &web.endpoint.as_ref().unwrap().ports[0];
    assert_eq!(
        (
            port.published_port,
            port.target_port,
            port.protocol.as_str()
        ),
        (4000, 80, "tcp")
    );
    assert!(s.ignored.is_empty());
}

#[test]
fn every_deploy_key_reaches_the_spec() {
    let s = stack(
        r#"
version: "3.8"
x-common: &common
  FOO: bar
services:
  api:
    image: shoal/demo-web
    command: sh -c 'echo "hi there"; exec sleep 600'
    environment:
      <<: *common
      PORT: 8080
    ports:
      - target: 53
        published: 5353
        protocol: udp
        mode: host
      - "7000-7001:80-81"
    hostname: api-host
    stop_grace_period: 1m30s
    healthcheck:
      test: wget -q localhost
      interval: 2s
      retries: 3
    deploy:
      mode: global
      endpoint_mode: dnsrr
      labels: [tier=back]
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      update_config: {parallelism: 2, delay: 10s, failure_action: rollback, order: start-first}
      rollback_config: {parallelism: 0}
      restart_policy: {condition: any, delay: 1s, max_attempts: 3, window: 30s}
    build: .
    depends_on: [db]
  db:
    image: shoal/demo-web
"#,
    );
    let api = s
        .services
        .iter()
        .find(|s| s.annotations.as_ref().unwrap().name == "getstartedlab_api")
        .unwrap();
    let c = api.task.as_ref().unwrap().container.as_ref().unwrap();
    assert_eq!(c.args, ["sh", "-c", "echo \"hi there\"; exec sleep 600"]);
    assert_eq!(c.env, ["FOO=bar", "PORT=8080"]);
    assert_eq!(c.hostname, "api-host");
    assert_eq!(c.stop_grace_period_nanos, 90_000_000_000);
    let h = c.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, ["CMD-SHELL", "wget -q localhost"]);
    assert_eq!((h.interval_nanos, h.retries), (2_000_000_000, 3));
    assert_eq!(api.mode, Some(Mode::Global(pb::GlobalService {})));
    let endpoint = api.endpoint.as_ref().unwrap();
    assert_eq!(endpoint.mode, pb::EndpointMode::Dnsrr as i32);
    let ports: Vec<(u32, u32, &str, i32)> = endpoint
        .ports
        .iter()
        .map(|p| {
            (
                p.published_port,
                p.target_port,
                p.protocol.as_str(),
                p.publish_mode,
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (5353, 53, "udp", 1),
            (7000, 80, "tcp", 0),
            (7001, 81, "tcp", 0)
        ]
    );
    let task = api.task.as_ref().unwrap();
    let placement = task.placement.as_ref().unwrap();
    assert_eq!(placement.constraints, ["node.role == worker"]);
    assert_eq!(
        placement.preferences[0].spread_descriptor,
        "node.labels.zone"
    );
    assert_eq!(placement.max_replicas, 2);
    let update = api.update.unwrap();
    assert_eq!(
        (update.parallelism, update.delay_nanos),
        (2, 10_000_000_000)
    );
    assert_eq!(
        update.failure_action,
        pb::UpdateFailureAction::Rollback as i32
    );
    assert_eq!(update.order, pb::UpdateOrder::StartFirst as i32);
    assert_eq!(api.rollback.unwrap().parallelism, 0);
    let restart = task.restart.unwrap();
    assert_eq!(
        (
            restart.delay_nanos,
            restart.max_attempts,
            restart.window_nanos
        ),
        (1_000_000_000, 3, 30_000_000_000)
    );
    assert_eq!(api.annotations.as_ref().unwrap().labels["tier"], "back");
    // No networks given: both join the stack's default network under their short names.
    assert_eq!(task.networks[0].target, "getstartedlab_default");
    assert_eq!(s.networks.len(), 1, "the default network is made once");
    assert_eq!(s.ignored, ["services.api.build", "services.api.depends_on"]);
}

#[test]
fn external_networks_and_variables() {
    let env = |v: &str| (v == "TAG").then(|| "v2".to_string());
    let (s, warnings) = load(
        r#"
services:
  web:
    image: "shoal/demo-web:${TAG}"
    command: ["sh", "-c", "echo $$HOME $(hostname) ${MISSING:-fallback} $UNSET"]
    networks:
      front:
        aliases: [www]
networks:
  front:
    external: true
"#,
        "s",
        &env,
    )
    .unwrap();
    let web = &s.services[0];
    let c = web.task.as_ref().unwrap().container.as_ref().unwrap();
    assert_eq!(c.image, "shoal/demo-web:v2");
    assert_eq!(c.args[2], "echo $HOME $(hostname) fallback ");
    assert_eq!(
        warnings,
        ["The UNSET variable is not set. Defaulting to a blank string."]
    );
    assert!(matches!(s.networks.as_slice(), [StackNetwork::External(n)] if n == "front"));
    assert_eq!(
        web.task.as_ref().unwrap().networks[0].aliases,
        ["web", "www"]
    );
}

#[test]
fn what_shoal_cannot_honour_is_refused_by_name() {
    let cases = [
        (
            "services:\n  web:\n    image: x\n    privileged: true\n",
            "services.web.privileged is not supported",
        ),
        (
            "services:\n  web:\n    image: x\n    colour: red\n",
            "unknown field `colour`",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          pids: 10\n",
            "services.web.deploy.resources.reservations.pids is not supported",
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [s]\n",
            "services.web.secrets: secret \"s\" is not declared under the top-level secrets",
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: ./s\n    environment: S\n",
            "secrets.s: give exactly one of file or environment",
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    content: hush\n",
            "secrets.s.content: a secret's data comes from a file",
        ),
        (
            "services:\n  web:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    file: ./c\n    template_driver: golang\n",
            "configs.c.template_driver",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      mode: sometimes\n",
            "use replicated, global, replicated-job or global-job",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      mode: global\n      replicas: 2\n",
            "drop replicas",
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [back]\n",
            "does not declare",
        ),
        ("services:\n  web:\n    command: x\n", "services.web.image"),
        (
            "version: \"2\"\nservices:\n  web:\n    image: x\n",
            "version 3.x",
        ),
        (
            "services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:80:80\"]\n",
            "host address",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      restart_policy:\n        delay: soon\n",
            "services.web.deploy.restart_policy.delay",
        ),
        ("services: [", "not valid YAML"),
        (
            "services:\n  web:\n    image: ${:-x}\n",
            "invalid interpolation",
        ),
    ];
    for (text, why) in cases {
        let e = refusal(text);
        assert!(e.contains(why), "{text:?}: {e:?} lacks {why:?}");
    }
    assert!(
        format!(
            "{:#}",
            load("services: {}", "bad name!", &no_env).unwrap_err()
        )
        .contains("invalid stack name")
    );
}

#[test]
fn volumes_and_engine_settings_convert_as_docker_converts_them() {
    let text = r#"
services:
  redis:
    image: redis
    command: redis-server --appendonly yes
    volumes:
      - "/home/docker/data:/data"
      - "cache:/cache:ro,nocopy"
      - "/scratch"
      - type: tmpfs
        target: /run/t
        tmpfs: {size: 64M}
      - {type: volume, source: shared, target: /shared}
    cap_add: [net_admin]
    cap_drop: [ALL]
    init: true
    read_only: true
    tty: true
    sysctls: {net.core.somaxconn: 1024}
    ulimits:
      nproc: 512
      nofile: {soft: 1024, hard: 2048}
    deploy:
      resources:
        limits: {pids: 100}
    extra_hosts: ["db:10.0.0.5"]
    dns: 192.0.2.1
    dns_search: [example.org]
    logging:
      driver: json-file
      options: {max-size: 1m}
volumes:
  cache:
    driver: local
    labels: {tier: cache}
  shared:
    external: true
"#;
    let s = stack(text);
    let task = s.services[0].task.clone().unwrap();
    let c = task.container.unwrap();
    let m = &c.mounts;
    assert_eq!(m.len(), 5);
    assert_eq!(
        (m[0].r#type(), m[0].source.as_str(), m[0].target.as_str()),
        (pb::MountType::Bind, "/home/docker/data", "/data")
    );
    // A stack's own volume is named for the stack and labelled with it.
    assert_eq!(m[1].source, "getstartedlab_cache");
    assert!(m[1].read_only);
    let v = m[1].volume.clone().unwrap();
    assert!(v.no_copy);
    assert_eq!(
        v.labels.get(NAMESPACE_LABEL).map(String::as_str),
        Some("getstartedlab")
    );
    assert_eq!(v.labels.get("tier").map(String::as_str), Some("cache"));
    assert_eq!(v.driver.unwrap().name, "local");
    assert_eq!(
        (m[2].r#type(), m[2].source.as_str()),
        (pb::MountType::Volume, "")
    );
    assert_eq!(m[3].tmpfs.unwrap().size_bytes, 64 << 20);
    // An external volume keeps its own name.
    assert_eq!(m[4].source, "shared");
    assert_eq!(c.capability_add, ["CAP_NET_ADMIN"]);
    assert_eq!(c.capability_drop, ["ALL"]);
    assert_eq!((c.init, c.read_only, c.tty), (Some(true), true, true));
    assert_eq!(
        c.sysctls.get("net.core.somaxconn").map(String::as_str),
        Some("1024")
    );
    assert_eq!(c.hosts, ["10.0.0.5 db"]);
    let dns = c.dns_config.unwrap();
    assert_eq!(
        (dns.nameservers, dns.search),
        (
            vec!["192.0.2.1".to_string()],
            vec!["example.org".to_string()]
        )
    );
    assert_eq!(task.log_driver.unwrap().name, "json-file");
    let ulimits: Vec<_> = c
        .ulimits
        .iter()
        .map(|u| (u.name.as_str(), u.soft, u.hard))
        .collect();
    assert_eq!(ulimits, [("nofile", 1024, 2048), ("nproc", 512, 512)]);
    assert_eq!(task.resources.unwrap().limits.unwrap().pids, 100);

    for (bad, why) in [
        (
            "services:\n  w:\n    image: x\n    volumes: [\"data:/data\"]\n",
            "not declared under the top-level volumes",
        ),
        (
            "services:\n  w:\n    image: x\n    volumes: [\"./data:/data\"]\n",
            "give an absolute path",
        ),
        (
            "services:\n  w:\n    image: x\n    volumes: [\"/a:/data:z\"]\n",
            "mode \"z\" is not supported",
        ),
        (
            "services:\n  w:\n    image: x\n    volumes: [{type: npipe, source: a, target: /b}]\n",
            "services.w.volumes[0].type",
        ),
        (
            "services:\n  w:\n    image: x\n    extra_hosts: [\"db\"]\n",
            "use NAME:IP",
        ),
    ] {
        let err = refusal(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn secrets_and_configs_convert_as_docker_stack_deploy_converts_them() {
    let text = "services:
  db:
    image: x
    secrets:
      - db_password
      - source: api_key
        target: key.txt
        uid: '103'
        gid: \"103\"
        mode: 0440
    configs:
      - nginx
      - source: extra
        target: /etc/extra.conf
secrets:
  db_password:
    file: ./db_password.txt
  api_key:
    external: true
  unused:
    environment: NOT_READ
configs:
  nginx:
    file: ./nginx.conf
    labels: [tier=front]
  extra:
    content: |
      x = 1
";
    let s = stack(text);
    let c = s.services[0].task.clone().unwrap().container.unwrap();
    let files: Vec<(&str, &str, &str, u32)> = c
        .secrets
        .iter()
        .map(|r| {
            let f = r.file.as_ref().unwrap();
            (
                r.secret_name.as_str(),
                f.name.as_str(),
                f.uid.as_str(),
                f.mode,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("getstartedlab_db_password", "db_password", "", 0),
            ("api_key", "key.txt", "103", 0o440),
        ]
    );
    let targets: Vec<(&str, &str)> = c
        .configs
        .iter()
        .map(|r| {
            (
                r.config_name.as_str(),
                r.file.as_ref().unwrap().name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("getstartedlab_nginx", "/nginx"),
            ("getstartedlab_extra", "/etc/extra.conf")
        ]
    );
    // Only what a service uses is made (the unused secret is not read at all).
    assert_eq!(
        s.secrets,
        [
            StackFile::External("api_key".into()),
            StackFile::Owned {
                name: "getstartedlab_db_password".into(),
                labels: [(NAMESPACE_LABEL.to_string(), "getstartedlab".to_string())].into(),
                source: crate::compose_secrets::FileSource::File("./db_password.txt".into()),
            },
        ]
    );
    let StackFile::Owned { labels, .. } = &s.configs[1] else {
        panic!("{:?}", s.configs)
    };
    assert_eq!(labels["tier"], "front");
}

#[test]
fn job_modes_convert_as_docker_stack_deploy_converts_them() {
    let s = stack(
        "services:\n  once:\n    image: x\n    deploy:\n      mode: replicated-job\n      replicas: 3\n  each:\n    image: x\n    deploy:\n      mode: global-job\n",
    );
    let modes: Vec<_> = s.services.iter().map(|s| s.mode).collect();
    assert!(modes.contains(&Some(Mode::ReplicatedJob(pb::ReplicatedJob {
        max_concurrent: 3,
        total_completions: 3
    }))));
    assert!(modes.contains(&Some(Mode::GlobalJob(pb::GlobalJob {}))));
}

//! shoal's Engine API answers checked against the Engine API's own OpenAPI description:
//! moby's `api/swagger.yaml` (API 1.41), read at test time from Debian's
//! golang-github-docker-docker-dev (installed by scripts/setup.sh), never copied here.
//! Every field shoal writes must be one the API has, of the type the API gives it.

mod common;

use serde_json::Value;

use common::Lab;

const SWAGGER: &str = "/usr/share/gocode/src/github.com/docker/docker/api/swagger.yaml";

/// Where swagger.yaml 1.41 and dockerd 20.10 disagree, dockerd's Go types (what clients
/// actually read) win: fields they write that the YAML lacks or spells otherwise, by the
/// end of their path in an answer.
const SPEC_ERRATA: [&str; 5] = [
    // api/types/swarm/container.go: `Healthcheck *container.HealthConfig`; the YAML
    // says HealthCheck, which no dockerd ever wrote.
    ".ContainerSpec.Healthcheck",
    // api/types/swarm/task.go: Task.NetworksAttachments and TaskStatus.PortStatus.
    ".NetworksAttachments",
    ".Status.PortStatus",
    // api/types/types.go, NetworkResource: ConfigFrom and ConfigOnly (API 1.30).
    ".ConfigFrom",
    ".ConfigOnly",
];

/// Fields newer than the YAML's 1.41 that shoal serves (up to 1.50), with the version
/// that brought them, from moby's API changelog (docs/api/version-history.md): dockerd
/// writes them to clients of any version; requests from older clients drop them
/// (request.rs, `for_version`).
const NEWER_FIELDS: [(&str, &str); 4] = [
    (".ContainerSpec.Privileges.Seccomp", "1.44"),
    (".ContainerSpec.Privileges.AppArmor", "1.44"),
    (".ContainerSpec.Privileges.NoNewPrivileges", "1.44"),
    (".ContainerSpec.OomScoreAdj", "1.46"),
];

/// The API description, with `$ref`s looked up in its definitions.
struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(SWAGGER).unwrap_or_else(|e| {
            panic!("{SWAGGER}: {e} (scripts/setup.sh installs golang-github-docker-docker-dev)")
        });
        Spec(serde_norway::from_str(&text).expect("swagger.yaml parses"))
    }

    /// The schema of a 2xx answer of `method path` (a path as the spec writes it).
    fn answer(&self, method: &str, path: &str) -> &Value {
        let responses = &self.0["paths"][path][method]["responses"];
        ["200", "201"]
            .iter()
            .map(|code| &responses[*code]["schema"])
            .find(|s| !s.is_null())
            .unwrap_or_else(|| panic!("the spec has no answer for {method} {path}"))
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.trim_start_matches("#/definitions/");
                self.resolve(&self.0["definitions"][name])
            }
            None => schema,
        }
    }

    /// The properties an object schema has, its `allOf` parts included.
    fn properties<'a>(&'a self, schema: &'a Value) -> Vec<(&'a String, &'a Value)> {
        let schema = self.resolve(schema);
        let mut out: Vec<(&String, &Value)> = schema["properties"]
            .as_object()
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            out.extend(self.properties(part));
        }
        out
    }

    /// What in `value` the schema does not allow, as "path: why".
    fn check(&self, schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
        let schema = self.resolve(schema);
        // Go writes nil slices, maps and pointers as null.
        if value.is_null() {
            return;
        }
        let kind = schema["type"]
            .as_str()
            .unwrap_or(if schema["allOf"].is_array() {
                "object"
            } else {
                ""
            });
        let fits = match kind {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !fits {
            problems.push(format!("{path}: {value} is not {kind}"));
            return;
        }
        if let Some(items) = value.as_array() {
            for (i, item) in items.iter().enumerate() {
                self.check(&schema["items"], item, &format!("{path}[{i}]"), problems);
            }
        }
        let Some(fields) = value.as_object() else {
            return;
        };
        let properties = self.properties(schema);
        let extra = &schema["additionalProperties"];
        if properties.is_empty() && extra.is_null() {
            return; // a free-form object
        }
        for (key, v) in fields {
            let here = format!("{path}.{key}");
            match properties.iter().find(|(name, _)| *name == key) {
                Some((_, s)) => self.check(s, v, &here, problems),
                None if extra.is_object() => self.check(extra, v, &here, problems),
                None if extra.as_bool() == Some(true) => {}
                None if SPEC_ERRATA.iter().any(|e| here.ends_with(e)) => {}
                None if NEWER_FIELDS.iter().any(|(f, _)| here.ends_with(f)) => {}
                None => problems.push(format!("{here}: the API has no such field")),
            }
        }
    }
}

#[test]
fn every_swarm_answer_has_only_fields_the_engine_api_has_with_their_types() {
    let spec = Spec::load();
    // The newer fields are newer than the YAML read, and no newer than shoal serves.
    let yaml_version = spec.0["info"]["version"].as_str().unwrap().to_string();
    let version = |v: &str| -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    for (field, since) in NEWER_FIELDS {
        assert!(
            version(since) > version(&yaml_version) && version(since) <= (1, 50),
            "{field}: {since} against the YAML's {yaml_version}"
        );
    }
    let lab = Lab::up("eng-conf", 89, 2, 1, "1s");
    let post = |path: &str, body: &str| {
        let (code, answer) = lab.engine_api("manager1", "POST", path, Some(body));
        assert!((200..300).contains(&code), "{path}: {answer}");
        answer
    };
    let created_net = post(
        "/v1.41/networks/create",
        r#"{"Name": "confnet", "Driver": "overlay", "Labels": {"a": "b"}}"#,
    );
    let created_svc = post(
        "/v1.41/services/create",
        r#"{"Name": "conf", "Labels": {"tier": "web"},
            "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web", "Env": ["A=1"],
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000}},
              "Placement": {"Constraints": ["node.role==manager"]},
              "Networks": [{"Target": "confnet", "Aliases": ["c"]}]},
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": {"Parallelism": 1, "MaxFailureRatio": 0.4},
            "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8089}]}}"#,
    );
    // dockerd answers {"ID"} (its SecretCreateResponse), not the YAML's IdResponse.
    post(
        "/v1.41/secrets/create",
        r#"{"Name": "confsecret", "Labels": {"a": "b"}, "Data": "aHVzaA=="}"#,
    );
    post(
        "/v1.41/configs/create",
        r#"{"Name": "confconfig", "Labels": {"a": "b"}, "Data": "eCA9IDE="}"#,
    );
    // Every engine setting, shown back (its tasks cannot run on the process runtime);
    // asked at 1.50 so the fields newer than the YAML are kept.
    post(
        "/v1.50/services/create",
        r#"{"Name": "confeng",
            "TaskTemplate": {"ContainerSpec": {"Image": "shoal/demo-web", "Init": true,
                "Mounts": [{"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": true,
                            "BindOptions": {"Propagation": "rslave", "NonRecursive": true}},
                           {"Type": "volume", "Source": "v", "Target": "/v",
                            "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"},
                                              "DriverConfig": {"Name": "local", "Options": {"o": "p"}}}},
                           {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448}}],
                "CapabilityAdd": ["CAP_NET_ADMIN"], "CapabilityDrop": ["CAP_MKNOD"],
                "ReadOnly": true, "TTY": true, "OpenStdin": true, "Sysctls": {"net.core.somaxconn": "1024"},
                "Hosts": ["10.0.0.1 db"], "Groups": ["1234"],
                "DNSConfig": {"Nameservers": ["192.0.2.1"], "Search": ["example.org"], "Options": ["timeout:1"]},
                "Privileges": {"SELinuxContext": {"User": "system_u"}, "Seccomp": {"Mode": "unconfined"},
                               "AppArmor": {"Mode": "disabled"}, "NoNewPrivileges": true},
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}], "OomScoreAdj": 100,
                "Secrets": [{"File": {"Name": "s", "UID": "0", "GID": "0", "Mode": 256}, "SecretName": "confsecret"}],
                "Configs": [{"File": {"Name": "/c", "UID": "0", "GID": "0", "Mode": 292}, "ConfigName": "confconfig"}]},
              "Resources": {"Limits": {"Pids": 100}},
              "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}},
              "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]}}}"#,
    );
    lab.wait_running("conf", 1);
    let mut problems = Vec::new();
    let mut check = |method: &str, spec_path: &str, value: &Value| {
        spec.check(
            spec.answer(method, spec_path),
            value,
            spec_path,
            &mut problems,
        );
    };
    check("post", "/networks/create", &created_net);
    check("post", "/services/create", &created_svc);
    for (spec_path, path) in [
        ("/services", "/v1.41/services?status=true"),
        ("/services/{id}", "/v1.41/services/conf"),
        ("/services/{id}", "/v1.41/services/confeng"),
        ("/nodes", "/v1.41/nodes"),
        ("/nodes/{id}", "/v1.41/nodes/manager1"),
        ("/tasks", "/v1.41/tasks"),
        ("/networks", "/v1.41/networks"),
        ("/networks/{id}", "/v1.41/networks/confnet"),
        ("/secrets", "/v1.41/secrets"),
        ("/secrets/{id}", "/v1.41/secrets/confsecret"),
        ("/configs", "/v1.41/configs"),
        ("/configs/{id}", "/v1.41/configs/confconfig"),
        ("/swarm", "/v1.41/swarm"),
        ("/info", "/v1.41/info"),
        ("/version", "/v1.41/version"),
    ] {
        let (code, answer) = lab.engine_api("manager1", "GET", path, None);
        assert_eq!(code, 200, "{path}: {answer}");
        check("get", spec_path, &answer);
    }
    let (_, tasks) = lab.engine_api("manager1", "GET", "/v1.41/tasks", None);
    let task_id = tasks[0]["ID"].as_str().expect("a task").to_string();
    let (_, task) = lab.engine_api("manager1", "GET", &format!("/v1.41/tasks/{task_id}"), None);
    check("get", "/tasks/{id}", &task);
    assert!(
        problems.is_empty(),
        "not as the Engine API says:\n{}",
        problems.join("\n")
    );
}

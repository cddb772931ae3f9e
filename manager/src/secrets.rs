//! Secrets and configs: named blobs the managers keep in Raft and hand only to the nodes
//! whose tasks read them (dispatcher.rs). Create, list, inspect, update (labels only, as
//! Swarm: the data of a secret never changes, a new version is a new secret), remove
//! (refused while a service uses one); and a service's references to them, resolved and
//! checked when the service is written.

use std::collections::BTreeMap;

use shoal_proto::stored_object::Object;
use shoal_proto::{
    Annotations, Config, ConfigSpec, ContainerSpec, Driver, FileTarget, Meta, Secret, SecretSpec,
    StoreActionKind,
};

use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::{Kind, State, action, proposal};

/// Swarm's limit for a secret's or a config's data (it must be smaller).
pub const MAX_SIZE: usize = 500 * 1024;
/// Where secrets appear in a task.
pub const SECRETS_DIR: &str = "/run/secrets";

/// What secrets and configs have in common, so each operation is written once.
trait Kept: Clone + Sized {
    /// The word a user reads: "secret" or "config".
    const WORD: &'static str;
    fn new(id: String, meta: Meta, annotations: Annotations, data: Vec<u8>) -> Self;
    fn all(state: &State) -> Vec<&Self>;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn meta(&mut self) -> &mut Meta;
    fn annotations_mut(&mut self) -> &mut Annotations;
    fn data(&self) -> &[u8];
    fn object(self) -> Object;
    fn from_object(o: Object) -> Option<Self>;
    /// The IDs a container spec refers to.
    fn referenced(c: &ContainerSpec) -> Vec<&str>;
}

/// Secrets and configs share their shape (ID, meta, spec with annotations and data);
/// only the names differ.
macro_rules! kept {
    ($type:ident, $spec:ident, $variant:ident, $word:literal, $refs:ident, $ref_id:ident) => {
        impl Kept for $type {
            const WORD: &'static str = $word;
            fn new(id: String, meta: Meta, annotations: Annotations, data: Vec<u8>) -> Self {
                $type {
                    id,
                    meta: Some(meta),
                    spec: Some($spec {
                        annotations: Some(annotations),
                        data,
                        ..Default::default()
                    }),
                }
            }
            fn all(state: &State) -> Vec<&Self> {
                state
                    .list(Kind::$variant)
                    .filter_map(|o| match o {
                        Object::$variant(x) => Some(x),
                        _ => None,
                    })
                    .collect()
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                $type::name(self)
            }
            fn meta(&mut self) -> &mut Meta {
                self.meta.get_or_insert_default()
            }
            fn annotations_mut(&mut self) -> &mut Annotations {
                self.spec
                    .get_or_insert_default()
                    .annotations
                    .get_or_insert_default()
            }
            fn data(&self) -> &[u8] {
                self.spec.as_ref().map_or(&[], |s| s.data.as_slice())
            }
            fn object(self) -> Object {
                Object::$variant(self)
            }
            fn from_object(o: Object) -> Option<Self> {
                match o {
                    Object::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn referenced(c: &ContainerSpec) -> Vec<&str> {
                c.$refs.iter().map(|r| r.$ref_id.as_str()).collect()
            }
        }
    };
}

kept!(Secret, SecretSpec, Secret, "secret", secrets, secret_id);
kept!(Config, ConfigSpec, Config, "config", configs, config_id);

fn find<T: Kept>(state: &State, key: &str) -> Result<T> {
    crate::lookup::find_by(
        T::all(state).into_iter(),
        key,
        |x| x.id(),
        |x| x.name(),
        format!("{} {key} not found", T::WORD),
    )
}

/// Swarm's rule for the names of secrets and configs.
fn check_name(word: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ManagerError::InvalidArgument(format!(
            "invalid {word} name {name:?}: use up to 64 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )))
    }
}

fn check_data(word: &str, data: &[u8]) -> Result<()> {
    if data.is_empty() || data.len() >= MAX_SIZE {
        return Err(ManagerError::InvalidArgument(format!(
            "{word} data must be larger than 0 and less than {} KiB (it is {} bytes)",
            MAX_SIZE / 1024,
            data.len()
        )));
    }
    Ok(())
}

/// Templates are not rendered: only no template driver (or "none") is accepted.
fn check_templating(word: &str, templating: Option<&Driver>) -> Result<()> {
    match templating.map(|d| d.name.as_str()) {
        None | Some("" | "none") => Ok(()),
        Some(other) => Err(ManagerError::InvalidArgument(format!(
            "{word} template driver {other:?} is not supported: shoal does not render templates; leave --template-driver out"
        ))),
    }
}

async fn create<T: Kept>(m: &impl Proposer, annotations: Annotations, data: Vec<u8>) -> Result<T> {
    check_name(T::WORD, &annotations.name)?;
    check_data(T::WORD, &data)?;
    let now = shoal_proto::now_nanos();
    let meta = Meta {
        created_at_unix_nanos: now,
        updated_at_unix_nanos: now,
        ..Default::default()
    };
    let object = T::new(shoal_proto::ids::new_id(), meta, annotations, data);
    let result = m
        .propose(proposal(vec![action(
            StoreActionKind::Create,
            object.object(),
        )]))
        .await?;
    stored(result)
}

fn stored<T: Kept>(result: shoal_proto::ProposalResult) -> Result<T> {
    result
        .objects
        .into_iter()
        .find_map(|o| T::from_object(o.object?))
        .ok_or_else(|| ManagerError::Raft(format!("the store did not return the {}", T::WORD)))
}

fn list<T: Kept + 'static>(m: &impl Proposer) -> Vec<T> {
    let mut all: Vec<T> = m.store().view(|s| T::all(s).into_iter().cloned().collect());
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

/// Changes the labels; anything else differing from what is stored is refused.
async fn update<T: Kept>(
    m: &impl Proposer,
    key: &str,
    version: u64,
    annotations: Option<Annotations>,
    data: &[u8],
) -> Result<T> {
    let mut current: T = m.store().view(|s| find(s, key))?;
    let stored_version = current.meta().version.map(|v| v.index).unwrap_or_default();
    if version != 0 && version != stored_version {
        return Err(ManagerError::Rejected(
            shoal_proto::Refusal::OutOfSequence,
            format!(
                "update out of sequence: {} {} is at version {stored_version}, the update was made against version {version}; inspect it again and retry",
                T::WORD,
                current.name()
            ),
        ));
    }
    let annotations = annotations.unwrap_or_default();
    let renamed = annotations.name != current.name();
    let data_changed = !data.is_empty() && data != current.data();
    if renamed || data_changed {
        return Err(ManagerError::InvalidArgument(format!(
            "only updates to Labels are allowed: a {word}'s name and data never change; create a new {word} and point the services at it",
            word = T::WORD
        )));
    }
    *current.annotations_mut() = annotations;
    current.meta().updated_at_unix_nanos = shoal_proto::now_nanos();
    let result = m
        .propose(proposal(vec![action(
            StoreActionKind::Update,
            current.object(),
        )]))
        .await?;
    stored(result)
}

/// Removes one no service refers to.
async fn remove<T: Kept>(m: &impl Proposer, key: &str) -> Result<()> {
    let (object, users) = m.store().view(|s| {
        let object: T = find(s, key)?;
        let mut users: Vec<String> = s
            .services()
            .filter(|svc| {
                svc.spec
                    .as_ref()
                    .and_then(|s| s.task.as_ref()?.container.as_ref())
                    .is_some_and(|c| T::referenced(c).contains(&object.id()))
            })
            .map(|svc| svc.name().to_string())
            .collect();
        users.sort();
        Ok::<_, ManagerError>((object, users))
    })?;
    if !users.is_empty() {
        return Err(ManagerError::FailedPrecondition(format!(
            "{} '{}' is in use by the following service{}: {}; remove it from them first (service update --{}-rm)",
            T::WORD,
            object.name(),
            if users.len() == 1 { "" } else { "s" },
            users.join(", "),
            T::WORD
        )));
    }
    m.propose(proposal(vec![action(
        StoreActionKind::Remove,
        object.object(),
    )]))
    .await
    .map(|_| ())
}

pub async fn create_secret(m: &impl Proposer, spec: SecretSpec) -> Result<Secret> {
    if let Some(driver) = spec.driver.as_ref().filter(|d| !d.name.is_empty()) {
        return Err(ManagerError::InvalidArgument(format!(
            "secret driver {:?} is not supported: shoal keeps secrets in its own encrypted store; leave --driver out",
            driver.name
        )));
    }
    check_templating("secret", spec.templating.as_ref())?;
    let secret: Secret = create(m, spec.annotations.unwrap_or_default(), spec.data).await?;
    Ok(secret.without_data())
}

/// Secrets as users see them: never with their data.
pub fn list_secrets(m: &impl Proposer) -> Vec<Secret> {
    list::<Secret>(m)
        .into_iter()
        .map(Secret::without_data)
        .collect()
}

pub fn get_secret(m: &impl Proposer, key: &str) -> Result<Secret> {
    m.store()
        .view(|s| find::<Secret>(s, key))
        .map(Secret::without_data)
}

pub async fn update_secret(
    m: &impl Proposer,
    key: &str,
    version: u64,
    spec: SecretSpec,
) -> Result<Secret> {
    let secret: Secret = update(m, key, version, spec.annotations, &spec.data).await?;
    Ok(secret.without_data())
}

pub async fn remove_secret(m: &impl Proposer, key: &str) -> Result<()> {
    remove::<Secret>(m, key).await
}

pub async fn create_config(m: &impl Proposer, spec: ConfigSpec) -> Result<Config> {
    check_templating("config", spec.templating.as_ref())?;
    create(m, spec.annotations.unwrap_or_default(), spec.data).await
}

pub fn list_configs(m: &impl Proposer) -> Vec<Config> {
    list(m)
}

pub fn get_config(m: &impl Proposer, key: &str) -> Result<Config> {
    m.store().view(|s| find(s, key))
}

pub async fn update_config(
    m: &impl Proposer,
    key: &str,
    version: u64,
    spec: ConfigSpec,
) -> Result<Config> {
    update(m, key, version, spec.annotations, &spec.data).await
}

pub async fn remove_config(m: &impl Proposer, key: &str) -> Result<()> {
    remove::<Config>(m, key).await
}

/// Resolves a service's secret and config references (by ID or name, as given) to the
/// stored objects, fills in their defaults (secrets at /run/secrets/<name>, configs at
/// /<name>; owner 0:0, mode 0444), and refuses unknown ones and two files at one path.
pub fn resolve_references(state: &State, c: &mut ContainerSpec) -> Result<()> {
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for r in &mut c.secrets {
        let key = if r.secret_id.is_empty() {
            &r.secret_name
        } else {
            &r.secret_id
        };
        let secret: Secret = find(state, key)?;
        r.secret_id = secret.id.clone();
        r.secret_name = secret.name().to_string();
        let file = default_file(r.file.get_or_insert_default(), &r.secret_name);
        file.name = secret_path(&file.name)?;
        let path = format!("{SECRETS_DIR}/{}", file.name);
        claim(&mut targets, &path, &format!("secret {}", r.secret_name))?;
    }
    for r in &mut c.configs {
        let key = if r.config_id.is_empty() {
            &r.config_name
        } else {
            &r.config_id
        };
        let config: Config = find(state, key)?;
        r.config_id = config.id.clone();
        r.config_name = config.name().to_string();
        let file = default_file(r.file.get_or_insert_default(), &r.config_name);
        file.name = config_path(&file.name)?;
        claim(
            &mut targets,
            &file.name,
            &format!("config {}", r.config_name),
        )?;
    }
    Ok(())
}

fn default_file<'a>(file: &'a mut FileTarget, name: &str) -> &'a mut FileTarget {
    if file.name.is_empty() {
        file.name = name.to_string();
    }
    for id in [&mut file.uid, &mut file.gid] {
        if id.is_empty() {
            *id = "0".into();
        }
    }
    if file.mode == 0 {
        file.mode = 0o444;
    }
    file
}

/// A secret's file: a name under /run/secrets (an absolute path must lie there).
fn secret_path(target: &str) -> Result<String> {
    let relative = target
        .strip_prefix(SECRETS_DIR)
        .map_or(target, |rest| rest.trim_start_matches('/'));
    if relative.starts_with('/') || !clean_relative(relative) {
        return Err(ManagerError::InvalidArgument(format!(
            "secret target {target:?} must be a file name under {SECRETS_DIR}/ (like db_password), without '..'"
        )));
    }
    Ok(relative.to_string())
}

/// A config's file: an absolute path (a relative one is taken from /).
fn config_path(target: &str) -> Result<String> {
    let relative = target.trim_start_matches('/');
    if !clean_relative(relative) {
        return Err(ManagerError::InvalidArgument(format!(
            "config target {target:?} must be a file path (like /etc/app.conf), without '..'"
        )));
    }
    Ok(format!("/{relative}"))
}

fn clean_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.ends_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

fn claim(targets: &mut BTreeMap<String, String>, path: &str, who: &str) -> Result<()> {
    if let Some(first) = targets.insert(path.to_string(), who.to_string()) {
        return Err(ManagerError::InvalidArgument(format!(
            "{first} and {who} both target the file {path}: give one of them another target"
        )));
    }
    Ok(())
}

/// Owners must be numeric IDs: the task's files are made before anything in it runs.
pub fn check_owners(c: &ContainerSpec) -> std::result::Result<(), String> {
    let files = c
        .secrets
        .iter()
        .filter_map(|r| r.file.as_ref().map(|f| (&r.secret_name, f)))
        .chain(
            c.configs
                .iter()
                .filter_map(|r| r.file.as_ref().map(|f| (&r.config_name, f))),
        );
    for (name, f) in files {
        for id in [&f.uid, &f.gid] {
            if !id.is_empty() && id.parse::<u32>().is_err() {
                return Err(format!(
                    "{name}: uid and gid must be numbers, not {id:?} (the file is made before the task's users exist)"
                ));
            }
        }
        if f.mode > 0o7777 {
            return Err(format!(
                "{name}: mode {:o} is not a file mode (use an octal like 0400)",
                f.mode
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposer::{Direct, block_on};
    use shoal_proto::{ConfigReference, SecretReference, ServiceSpec};

    fn spec(name: &str, data: &[u8]) -> SecretSpec {
        SecretSpec {
            annotations: Some(Annotations {
                name: name.into(),
                ..Default::default()
            }),
            data: data.to_vec(),
            ..Default::default()
        }
    }

    fn config(m: &Direct, name: &str) -> Config {
        block_on(create_config(
            m,
            ConfigSpec {
                annotations: Some(Annotations {
                    name: name.into(),
                    ..Default::default()
                }),
                data: b"x = 1".to_vec(),
                ..Default::default()
            },
        ))
        .unwrap()
    }

    #[test]
    fn secrets_are_made_listed_and_changed_as_swarm_allows() {
        let m = Direct::leading(1);
        let s = block_on(create_secret(&m, spec("db", b"hush"))).unwrap();
        assert!(s.spec.as_ref().unwrap().data.is_empty(), "never answered");
        assert!(list_secrets(&m)[0].spec.as_ref().unwrap().data.is_empty());
        // Kept with its data for the tasks' agents.
        let kept = m.store().view(|st| st.secrets().next().cloned()).unwrap();
        assert_eq!(kept.spec.unwrap().data, b"hush");
        for (bad, why) in [
            (spec("db", b"again"), "secret db already exists"),
            (spec("", b"x"), "invalid secret name"),
            (spec("a/b", b"x"), "invalid secret name"),
            (spec("empty", b""), "larger than 0"),
            (spec("big", &vec![0; MAX_SIZE]), "less than 500 KiB"),
        ] {
            let err = block_on(create_secret(&m, bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let mut external = spec("vault", b"x");
        external.driver = Some(Driver {
            name: "vault".into(),
            ..Default::default()
        });
        let err = block_on(create_secret(&m, external)).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        // Labels change; the data never does.
        let mut relabel = spec("db", b"");
        relabel
            .annotations
            .as_mut()
            .unwrap()
            .labels
            .insert("a".into(), "b".into());
        let s = block_on(update_secret(&m, "db", 0, relabel)).unwrap();
        assert_eq!(s.spec.unwrap().annotations.unwrap().labels["a"], "b");
        let err = block_on(update_secret(&m, "db", 0, spec("db", b"new")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only updates to Labels are allowed"), "{err}");
    }

    #[test]
    fn references_resolve_take_their_defaults_and_block_removal() {
        let m = Direct::leading(1);
        let s = block_on(create_secret(&m, spec("db", b"hush"))).unwrap();
        let c = config(&m, "app.conf");
        let mut container = ContainerSpec {
            secrets: vec![SecretReference {
                secret_name: "db".into(),
                ..Default::default()
            }],
            configs: vec![ConfigReference {
                config_id: c.id.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        m.store()
            .view(|st| resolve_references(st, &mut container))
            .unwrap();
        let file = container.secrets[0].file.clone().unwrap();
        assert_eq!(container.secrets[0].secret_id, s.id);
        assert_eq!(
            (file.name.as_str(), file.uid.as_str(), file.mode),
            ("db", "0", 0o444)
        );
        assert_eq!(container.configs[0].config_name, "app.conf");
        assert_eq!(
            container.configs[0].file.as_ref().unwrap().name,
            "/app.conf"
        );

        for (target, why) in [
            ("../etc/passwd", "without '..'"),
            ("/etc/db", "under /run/secrets/"),
        ] {
            let mut bad = container.clone();
            bad.secrets[0].file.as_mut().unwrap().name = target.into();
            let err = m.store().view(|st| resolve_references(st, &mut bad));
            assert!(err.unwrap_err().to_string().contains(why), "{target}");
        }
        let mut twice = container.clone();
        twice.configs[0].file.as_mut().unwrap().name = "/run/secrets/db".into();
        let err = m.store().view(|st| resolve_references(st, &mut twice));
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("both target the file"),
            "two files at one path"
        );

        let mut svc = ServiceSpec::replicated("web", "img", 1);
        container.image = "img".into();
        svc.task.as_mut().unwrap().container = Some(container);
        block_on(crate::services::create(&m, svc)).unwrap();
        let err = block_on(remove_secret(&m, "db")).unwrap_err().to_string();
        assert!(
            err.contains("secret 'db' is in use by the following service: web"),
            "{err}"
        );
        let err = block_on(remove_config(&m, "app.conf")).unwrap_err();
        assert!(err.to_string().contains("service: web"), "{err}");
        block_on(crate::services::remove(&m, "web")).unwrap();
        block_on(remove_secret(&m, "db")).unwrap();
        block_on(remove_config(&m, "app.conf")).unwrap();
        assert!(list_secrets(&m).is_empty() && list_configs(&m).is_empty());
    }
}

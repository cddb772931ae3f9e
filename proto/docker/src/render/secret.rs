//! Secrets and configs as docker shows them: Engine API JSON (a secret never with its
//! data, a config with it, base64), `ls` tables and `inspect --pretty`.

use base64::Engine as _;
use serde_json::{Value, json};
use shoal_proto::{Annotations, Config, Driver, Meta, Secret};

use crate::text::{ago, rfc3339, table};

fn head(id: &str, meta: Option<&Meta>) -> Value {
    let meta = meta.copied().unwrap_or_default();
    json!({
        "ID": id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
    })
}

fn driver_json(d: &Driver) -> Value {
    json!({"Name": d.name, "Options": d.options})
}

/// A secret as `GET /secrets/{id}` answers: no Data, ever.
pub fn secret_json(s: &Secret) -> Value {
    let spec = s.spec.clone().unwrap_or_default();
    let a = spec.annotations.unwrap_or_default();
    let mut doc = head(&s.id, s.meta.as_ref());
    doc["Spec"] = json!({"Name": a.name, "Labels": a.labels});
    if let Some(d) = &spec.driver {
        doc["Spec"]["Driver"] = driver_json(d);
    }
    if let Some(d) = &spec.templating {
        doc["Spec"]["Templating"] = driver_json(d);
    }
    doc
}

/// A config as `GET /configs/{id}` answers, its data in base64.
pub fn config_json(c: &Config) -> Value {
    let spec = c.spec.clone().unwrap_or_default();
    let a = spec.annotations.unwrap_or_default();
    let mut doc = head(&c.id, c.meta.as_ref());
    doc["Spec"] = json!({
        "Name": a.name,
        "Labels": a.labels,
        "Data": base64::engine::general_purpose::STANDARD.encode(&spec.data),
    });
    if let Some(d) = &spec.templating {
        doc["Spec"]["Templating"] = driver_json(d);
    }
    doc
}

fn created_updated(meta: Option<&Meta>) -> [String; 2] {
    let meta = meta.copied().unwrap_or_default();
    [
        ago(meta.created_at_unix_nanos),
        ago(meta.updated_at_unix_nanos),
    ]
}

fn driver_name(d: Option<&Driver>) -> String {
    d.map(|d| d.name.clone()).unwrap_or_default()
}

/// `ls -q`: one ID a line.
fn id_lines<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.flat_map(|id| [id, "\n"]).collect()
}

/// `docker secret ls`.
pub fn secrets_table(secrets: &[Secret], quiet: bool) -> String {
    if quiet {
        return id_lines(secrets.iter().map(|s| s.id.as_str()));
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            let [created, updated] = created_updated(s.meta.as_ref());
            let driver = driver_name(s.spec.as_ref().and_then(|x| x.driver.as_ref()));
            vec![s.id.clone(), s.name().to_string(), driver, created, updated]
        })
        .collect();
    table(&["ID", "NAME", "DRIVER", "CREATED", "UPDATED"], &rows)
}

/// `docker config ls`.
pub fn configs_table(configs: &[Config], quiet: bool) -> String {
    if quiet {
        return id_lines(configs.iter().map(|c| c.id.as_str()));
    }
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            let [created, updated] = created_updated(c.meta.as_ref());
            vec![c.id.clone(), c.name().to_string(), created, updated]
        })
        .collect();
    table(&["ID", "NAME", "CREATED", "UPDATED"], &rows)
}

fn pretty_head(id: &str, annotations: Option<&Annotations>) -> String {
    let a = annotations.cloned().unwrap_or_default();
    let mut out = format!("ID:              {id}\nName:              {}\n", a.name);
    if !a.labels.is_empty() {
        out.push_str("Labels:\n");
        let labels: std::collections::BTreeMap<_, _> = a.labels.iter().collect();
        for (k, v) in labels {
            if v.is_empty() {
                out.push_str(&format!(" - {k}\n"));
            } else {
                out.push_str(&format!(" - {k}={v}\n"));
            }
        }
    }
    out
}

fn pretty_times(meta: Option<&Meta>) -> String {
    let meta = meta.copied().unwrap_or_default();
    format!(
        "Created at:        {}\nUpdated at:        {}\n",
        rfc3339(meta.created_at_unix_nanos),
        rfc3339(meta.updated_at_unix_nanos)
    )
}

/// `docker secret inspect --pretty`.
pub fn secret_pretty(s: &Secret) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let mut out = pretty_head(&s.id, spec.annotations.as_ref());
    out.push_str(&format!(
        "Driver:            {}\n",
        driver_name(spec.driver.as_ref())
    ));
    out.push_str(&pretty_times(s.meta.as_ref()));
    out
}

/// `docker config inspect --pretty`: the data too, as text.
pub fn config_pretty(c: &Config) -> String {
    let spec = c.spec.clone().unwrap_or_default();
    let mut out = pretty_head(&c.id, spec.annotations.as_ref());
    out.push_str(&pretty_times(c.meta.as_ref()));
    out.push_str("Data:\n");
    out.push_str(&String::from_utf8_lossy(&spec.data));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            id: "s1".into(),
            meta: None,
            spec: Some(shoal_proto::SecretSpec {
                annotations: Some(Annotations {
                    name: "db_password".into(),
                    labels: [("env".to_string(), "prod".to_string())].into(),
                }),
                data: b"Seven of Nine".to_vec(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_secret_shows_everything_but_its_data() {
        let s = secret();
        let shown = [
            secret_json(&s).to_string(),
            secret_pretty(&s),
            secrets_table(std::slice::from_ref(&s), false),
            format!("{s:?}"),
        ];
        for text in shown {
            assert!(text.contains("db_password"), "{text}");
            assert!(!text.contains("Seven of Nine"), "{text}");
            assert!(!text.contains("U2V2ZW4gb2YgTmluZQ"), "{text}");
        }
        assert_eq!(secret_json(&s)["Spec"]["Labels"]["env"], "prod");
    }

    #[test]
    fn a_config_shows_its_data() {
        let c = Config {
            id: "c1".into(),
            meta: None,
            spec: Some(shoal_proto::ConfigSpec {
                annotations: Some(Annotations {
                    name: "nginx.conf".into(),
                    ..Default::default()
                }),
                data: b"worker_processes 1;".to_vec(),
                ..Default::default()
            }),
        };
        assert_eq!(
            config_json(&c)["Spec"]["Data"],
            base64::engine::general_purpose::STANDARD.encode(b"worker_processes 1;")
        );
        assert!(config_pretty(&c).ends_with("Data:\nworker_processes 1;\n"));
        let ls = configs_table(&[c], false);
        assert!(ls.starts_with("ID "), "{ls}");
        assert!(ls.contains("nginx.conf"), "{ls}");
    }
}

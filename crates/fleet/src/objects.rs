//! The fleet's config objects (`config/KIND/NAME`, one TOML object each): `pairgate cluster
//! import` and `export`, and composing them with a replica's local file.

use std::collections::BTreeMap;

use pairgate_cluster::{Etcd, EtcdError};

use crate::schema::Key;

/// The object kinds kept under `config/`, in the order they are composed and exported.
const KINDS: [&str; 3] = ["region", "account", "tenant"];

/// Why an import, an export or a composition failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The TOML text does not parse.
    #[error("not TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// A table could not be written back as TOML.
    #[error("cannot write TOML: {0}")]
    Write(#[from] toml::ser::Error),
    /// An object without a `name`.
    #[error("a [[{kind}]] without a name")]
    Unnamed {
        /// `region`, `account` or `tenant`.
        kind: &'static str,
    },
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// `pairgate cluster import`: each `[[region]]`, `[[account]]` and `[[tenant]]` of a config
/// file becomes one key under `PREFIX/config/`. Returns how many objects were written.
pub async fn import(etcd: &Etcd, prefix: &str, text: &str) -> Result<usize, ObjectsError> {
    let mut written = 0;
    for (key, snippet) in split(text)? {
        etcd.put(&format!("{prefix}{key}"), snippet.as_bytes(), None)
            .await?;
        written += 1;
    }
    Ok(written)
}

/// The keys (without the prefix) and TOML snippets `import` writes for `text`.
pub fn split(text: &str) -> Result<Vec<(String, String)>, ObjectsError> {
    let table: toml::Table = toml::from_str(text)?;
    let mut out = Vec::new();
    for kind in KINDS {
        let Some(items) = table.get(kind).and_then(|v| v.as_array()) else {
            continue;
        };
        for item in items {
            let name = item
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or(ObjectsError::Unnamed { kind })?;
            let mut one = toml::Table::new();
            one.insert(kind.to_owned(), toml::Value::Array(vec![item.clone()]));
            out.push((
                Key::Config { kind, name }.to_string(),
                toml::to_string(&one)?,
            ));
        }
    }
    Ok(out)
}

/// `pairgate cluster export`: the objects under `PREFIX/config/` as one TOML document.
pub async fn export(etcd: &Etcd, prefix: &str) -> Result<String, ObjectsError> {
    let (kvs, revision) = etcd.get_prefix(&format!("{prefix}config/")).await?;
    let mut out = format!("# exported from etcd {prefix}config/ at revision {revision}\n");
    for kind in KINDS {
        for kv in kvs
            .iter()
            .filter(|kv| kv.key.contains(&format!("/config/{kind}/")))
        {
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(&kv.value));
        }
    }
    Ok(out)
}

/// The local file with its own objects replaced by the fleet's (`objects`: `KIND/NAME` ->
/// TOML snippet).
pub fn compose(local: &str, objects: &BTreeMap<String, String>) -> Result<String, ObjectsError> {
    let mut table: toml::Table = toml::from_str(local)?;
    for kind in KINDS {
        table.remove(kind);
    }
    let mut out = toml::to_string(&table)?;
    for kind in KINDS {
        for (key, snippet) in objects {
            if key.strip_prefix(kind).is_some_and(|k| k.starts_with('/')) {
                out.push('\n');
                out.push_str(snippet);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[listen]
http = "127.0.0.1:8080"

[[region]]
name = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"

[[tenant]]
name = "contoso"
hosts = ["contoso.example.com"]
primary = "east"
"#;

    #[test]
    fn split_gives_one_key_per_object() {
        let keys: Vec<String> = split(FILE)
            .expect("splits")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "config/region/eastus",
                "config/account/east",
                "config/tenant/contoso"
            ]
        );
        assert!(matches!(
            split("[[tenant]]\nhosts = []\n"),
            Err(ObjectsError::Unnamed { kind: "tenant" })
        ));
    }

    #[test]
    fn compose_keeps_local_sections_and_takes_the_fleets_objects() {
        let objects: BTreeMap<String, String> = split(FILE)
            .expect("splits")
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("config/").to_owned(), v))
            .collect();
        let local = "[listen]\nhttp = \"127.0.0.1:9090\"\n\n[[tenant]]\nname = \"local-only\"\n";
        let composed: toml::Table =
            toml::from_str(&compose(local, &objects).expect("composes")).expect("TOML");
        assert_eq!(composed["listen"]["http"].as_str(), Some("127.0.0.1:9090"));
        let tenants = composed["tenant"].as_array().expect("tenants");
        assert_eq!(tenants.len(), 1);
        assert_eq!(tenants[0]["name"].as_str(), Some("contoso"));
        assert_eq!(composed["region"].as_array().map(Vec::len), Some(1));
    }
}

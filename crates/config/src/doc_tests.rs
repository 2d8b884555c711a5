//! docs/config.md against the schema: every key the parser accepts is documented, every
//! documented key is accepted, and every documented default is the default.
//!
//! The accepted keys come from the `*Spec` types themselves (`keys::accepted_keys`), so a new
//! key cannot be added without its line in the docs (and a stale line cannot stay).

use std::collections::BTreeSet;

use crate::keys::accepted_keys;

/// A documented key: its section (`limits`, `alerts.azure_monitor`, `account`), whether the
/// section is an array of tables, the key, the default column as written (empty when the
/// default depends on another key: a table with a `types` column), and the last column.
struct DocKey {
    section: String,
    array: bool,
    key: String,
    default: String,
    meaning: String,
}

/// The key tables of docs/config.md: rows `| \`key\` | type | default | meaning |` under headings
/// `## \`[section]\`` or `## \`[[section]]\``.
fn documented_keys() -> Vec<DocKey> {
    let text = include_str!("../../../docs/config.md");
    let mut out = Vec::new();
    let mut section: Option<(String, bool)> = None;
    // Column of the default in the current table (None: per-type defaults), from its header.
    let mut default_column: Option<usize> = Some(3);
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.get(1) == Some(&"key") {
            default_column = if cells.contains(&"types") {
                None
            } else {
                cells.iter().position(|c| *c == "default")
            };
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.strip_prefix('`').and_then(|h| {
                let name = h.split('`').next()?;
                let array = name.starts_with("[[");
                Some((name.trim_matches(['[', ']']).to_owned(), array))
            });
            continue;
        }
        let Some((name, array)) = &section else {
            continue;
        };
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        // A key listed twice (per type) is one key.
        if out
            .iter()
            .any(|d: &DocKey| d.section == *name && d.key == key)
        {
            continue;
        }
        out.push(DocKey {
            section: name.clone(),
            array: *array,
            key,
            default: default_column
                .and_then(|c| cells.get(c))
                .map_or_else(String::new, |d| (*d).to_owned()),
            meaning: cells[cells.len() - 2].to_owned(),
        });
    }
    out
}

#[test]
fn every_accepted_key_is_documented_and_every_documented_key_accepted() {
    let accepted = accepted_keys();
    let documented = documented_keys();
    assert!(documented.len() > 50, "docs/config.md tables not found");
    let sections: BTreeSet<&str> = documented.iter().map(|d| d.section.as_str()).collect();
    let doc_paths: BTreeSet<String> = documented
        .iter()
        .map(|d| format!("{}.{}", d.section, d.key))
        .collect();
    let row = |section: &str, key: &str| {
        documented
            .iter()
            .find(|d| d.section == section && d.key == key)
    };
    let mut missing = Vec::new();
    for path in &accepted {
        if sections.contains(path.as_str())
            || sections.iter().any(|s| s.starts_with(&format!("{path}.")))
        {
            continue; // a section (or the parent of one, `alerts`)
        }
        // The longest documented section the path is under, and the rest of it.
        let Some((section, rest)) = sections
            .iter()
            .filter_map(|s| Some((*s, path.strip_prefix(s)?.strip_prefix('.')?)))
            .max_by_key(|(s, _)| s.len())
        else {
            missing.push(format!("{path} (no section for it)"));
            continue;
        };
        let ok = match rest.split_once('.') {
            None => doc_paths.contains(path),
            // A table-valued key (an account's `health`, a tenant's `limits`): its keys are
            // those of the section it repeats, or named in its row.
            Some((key, leaf)) => {
                row(section, key).is_some()
                    && (doc_paths.contains(&format!("{key}.{leaf}"))
                        || row(section, key).is_some_and(|r| r.meaning.contains(leaf)))
            }
        };
        if !ok {
            missing.push(path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "accepted but not in docs/config.md: {missing:#?}"
    );
    let stale: Vec<&String> = doc_paths
        .iter()
        .filter(|p| !accepted.contains(*p))
        .collect();
    assert!(
        stale.is_empty(),
        "in docs/config.md but not accepted: {stale:#?}"
    );
}

/// The config every default is checked against (no single-bracket sections, one of each
/// array-of-tables kind but `[[certificate]]`).
const BASE: &str = r#"
[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"

[[account]]
name = "west"
region = "westus"
url = "http://127.0.0.1:9002"

[[tenant]]
name = "contoso"
hosts = ["contoso.example.com"]
primary = "east"
secondary = "west"
"#;

#[test]
fn every_documented_default_is_the_default() {
    let env = |_: &str| None;
    // Sections that cannot appear without some keys: the default of each other key is checked
    // with these set in both configs.
    let context = |section: &str| match section {
        "cluster" => "backend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        _ => "",
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in documented_keys() {
        // Only defaults written as one TOML value (`"10s"`, `65536`, `["200-399"]`); "none",
        // "**required**" and prose such as "one per core" are not values.
        let Some(literal) = doc
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`'))
        else {
            continue;
        };
        // "`[health]`": the key inherits a whole section; checked with that section.
        if literal.starts_with('[') && !literal.starts_with("[\"") && literal != "[]" {
            continue;
        }
        let (base_text, text) = if doc.array {
            let header = format!("[[{}]]\n", doc.section);
            if !BASE.contains(&header) || BASE.contains(&format!("\n{} = ", doc.key)) {
                continue; // no such table in BASE, or BASE sets the key itself
            }
            let with = BASE.replacen(&header, &format!("{header}{} = {literal}\n", doc.key), 1);
            (BASE.to_owned(), with)
        } else {
            let section = format!("{BASE}\n[{}]\n{}", doc.section, context(&doc.section));
            let with = format!("{section}{} = {literal}\n", doc.key);
            (section, with)
        };
        let base = crate::load(&base_text, &env)
            .unwrap_or_else(|p| panic!("base for [{}] is valid: {p:?}", doc.section))
            .config;
        checked += 1;
        match crate::load(&text, &env) {
            Ok(loaded) if loaded.config == base => {}
            Ok(_) => wrong.push(format!(
                "{}.{} = {literal}: not the default",
                doc.section, doc.key
            )),
            Err(problems) => wrong.push(format!(
                "{}.{} = {literal}: {}",
                doc.section,
                doc.key,
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
    assert!(checked > 30, "only {checked} defaults found");
    assert!(wrong.is_empty(), "docs/config.md defaults: {wrong:#?}");
}

#[test]
fn duration_keys_are_the_keys_documented_as_durations() {
    let text = include_str!("../../../docs/config.md");
    let documented: BTreeSet<String> = text
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[1].starts_with('`') && cells[2] == "duration")
                .then(|| cells[1].trim_matches('`').to_owned())
        })
        .collect();
    let listed: BTreeSet<String> = crate::parse::DURATION_KEYS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    assert_eq!(
        listed, documented,
        "parse::DURATION_KEYS against docs/config.md"
    );
}

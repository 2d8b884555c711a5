//! The state file: operator pins and region states that survive a restart.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory) after every
//! change; read once at start. A file that cannot be parsed is moved aside, never silently
//! dropped, and the gateway starts without overrides. Besides the config schema, this format is
//! the only other `Deserialize` type in the workspace: it is data pairgate writes for itself.
//!
//! Version 2 keeps every hold on a region (`region_holds`: the operator's, each active
//! incident's); version 1 files, with one `regions` entry per region, are still read and
//! converted (see [`PersistedState::holds`]). A version 1 binary refuses (moves aside) a
//! version 2 file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pairgate_failover::Side;
use serde::{Deserialize, Serialize};

/// Current format version.
const VERSION: u32 = 2;

/// An operator override with its reason and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// `"primary"`/`"secondary"` for a tenant pin; `"down"` for a region.
    pub value: String,
    /// Why, as the operator (or alert) said.
    pub reason: String,
    /// Who set it: `operator` or `azure-monitor`.
    #[serde(default = "operator")]
    pub source: String,
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

fn operator() -> String {
    "operator".to_owned()
}

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// Tenant name to pin.
    #[serde(default)]
    pub tenants: BTreeMap<String, Override>,
    /// Version 1 only: region name to its one down mark. Read, converted by
    /// [`PersistedState::holds`], never written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, Override>,
    /// Region name to its holds, by holder id (`operator`, `incident:<tracking id>`). A region
    /// is marked down while it has at least one hold; `auto` is the absence of an entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_holds: BTreeMap<String, BTreeMap<String, Override>>,
    /// Account name to its holds, as for regions: an account is held down (counted unhealthy
    /// whatever its probes say) while it has at least one. Absent in files written before
    /// account holds existed; older binaries ignore it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub account_holds: BTreeMap<String, BTreeMap<String, Override>>,
}

/// The holder id of the operator's hold on a region.
pub const OPERATOR_HOLDER: &str = "operator";
/// The holder id of Resource Health's hold on an account.
pub const RESOURCE_HEALTH_HOLDER: &str = "resource-health";
/// The prefix of an incident's holder id; the incident's tracking id follows.
pub const INCIDENT_HOLDER_PREFIX: &str = "incident:";
/// How the alert receiver words a hold's reason; version 1 files are recognised by it.
pub const INCIDENT_REASON_PREFIX: &str = "azure service health incident ";

impl PersistedState {
    /// Moves version 1 `regions` entries into `region_holds`: a mark set by `azure-monitor`
    /// with an incident's reason becomes that incident's hold, any other the operator's.
    pub fn holds(mut self) -> PersistedState {
        for (region, mark) in std::mem::take(&mut self.regions) {
            let holder = match mark.reason.strip_prefix(INCIDENT_REASON_PREFIX) {
                Some(id) if mark.source == "azure-monitor" => {
                    format!("{INCIDENT_HOLDER_PREFIX}{id}")
                }
                _ => OPERATOR_HOLDER.to_owned(),
            };
            self.region_holds
                .entry(region)
                .or_default()
                .entry(holder)
                .or_insert(mark);
        }
        self
    }
}

/// Who holds a region down. A region is marked down while anyone holds it; each holder
/// releases only its own hold.
///
/// Ordered as their ids are (every incident before the operator, incidents by tracking id), so
/// holds list in the order the state file keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// An Azure Service Health incident, by tracking id.
    Incident(String),
    /// Azure Resource Health (an account's own availability): one hold, taken on
    /// `Unavailable` and released on `Available`.
    ResourceHealth,
    /// The operator (admin API), one hold however often it is set.
    Operator,
}

impl Holder {
    /// The id the hold is stored and shown under: `operator` or `incident:<tracking id>`.
    pub fn id(&self) -> String {
        match self {
            Holder::Operator => OPERATOR_HOLDER.to_owned(),
            Holder::ResourceHealth => RESOURCE_HEALTH_HOLDER.to_owned(),
            Holder::Incident(id) => format!("{INCIDENT_HOLDER_PREFIX}{id}"),
        }
    }

    /// The holder an id names; `None` for an id pairgate does not write.
    pub fn parse(id: &str) -> Option<Holder> {
        if id == OPERATOR_HOLDER {
            return Some(Holder::Operator);
        }
        if id == RESOURCE_HEALTH_HOLDER {
            return Some(Holder::ResourceHealth);
        }
        id.strip_prefix(INCIDENT_HOLDER_PREFIX)
            .filter(|tracking| !tracking.is_empty())
            .map(|tracking| Holder::Incident(tracking.to_owned()))
    }
}

/// Why an override was set, by whom and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Why, as the operator (or alert) said.
    pub reason: String,
    /// Who set it: `operator` or `azure-monitor`.
    pub source: String,
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// A tenant's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The side it is pinned to.
    pub side: Side,
    /// Why, by whom, when.
    pub note: Note,
}

/// The operator overrides as the controller keeps them; [`PersistedState`] is their form in
/// the state file ([`Overrides::to_persisted`], [`Overrides::from_persisted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Tenant name to its pin.
    pub pins: BTreeMap<String, Pin>,
    /// Region name to its holds, never empty: a region without holds has no entry (auto).
    pub holds: BTreeMap<String, BTreeMap<Holder, Note>>,
    /// Account name to its holds, never empty (a Service Health incident sent for the
    /// account's subscription, the operator).
    pub account_holds: BTreeMap<String, BTreeMap<Holder, Note>>,
}

/// An entry of a state file that names no override pairgate writes; dropped at restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// A pin whose value is neither `primary` nor `secondary`.
    Pin(String),
    /// A hold whose holder id is neither `operator` nor `incident:<id>`.
    Hold(String, String),
}

impl Overrides {
    /// The state file's form (current version).
    pub fn to_persisted(&self) -> PersistedState {
        let record = |value: &str, note: &Note| Override {
            value: value.to_owned(),
            reason: note.reason.clone(),
            source: note.source.clone(),
            at_unix_ms: note.at_unix_ms,
        };
        PersistedState {
            version: VERSION,
            tenants: self
                .pins
                .iter()
                .map(|(name, pin)| (name.clone(), record(pin.side.as_str(), &pin.note)))
                .collect(),
            regions: BTreeMap::new(),
            region_holds: self
                .holds
                .iter()
                .map(|(name, holds)| {
                    let holds = holds
                        .iter()
                        .map(|(holder, note)| (holder.id(), record("down", note)))
                        .collect();
                    (name.clone(), holds)
                })
                .collect(),
            account_holds: self
                .account_holds
                .iter()
                .map(|(name, holds)| {
                    let holds = holds
                        .iter()
                        .map(|(holder, note)| (holder.id(), record("down", note)))
                        .collect();
                    (name.clone(), holds)
                })
                .collect(),
        }
    }

    /// The overrides a state file holds (any version), and the entries it could not read.
    pub fn from_persisted(state: PersistedState) -> (Overrides, Vec<Unreadable>) {
        let state = state.holds();
        let mut out = Overrides::default();
        let mut unreadable = Vec::new();
        let note = |o: Override| Note {
            reason: o.reason,
            source: o.source,
            at_unix_ms: o.at_unix_ms,
        };
        for (name, o) in state.tenants {
            let side = match o.value.as_str() {
                "primary" => Side::Primary,
                "secondary" => Side::Secondary,
                _ => {
                    unreadable.push(Unreadable::Pin(name));
                    continue;
                }
            };
            out.pins.insert(
                name,
                Pin {
                    side,
                    note: note(o),
                },
            );
        }
        for (account, (name, holds)) in state
            .region_holds
            .into_iter()
            .map(|e| (false, e))
            .chain(state.account_holds.into_iter().map(|e| (true, e)))
        {
            let mut typed = BTreeMap::new();
            for (id, o) in holds {
                match Holder::parse(&id) {
                    Some(holder) => {
                        typed.insert(holder, note(o));
                    }
                    None => unreadable.push(Unreadable::Hold(name.clone(), id)),
                }
            }
            if !typed.is_empty() {
                if account {
                    out.account_holds.insert(name, typed);
                } else {
                    out.holds.insert(name, typed);
                }
            }
        }
        (out, unreadable)
    }
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet: start without overrides.
    Missing,
    /// The file's overrides.
    Found(PersistedState),
    /// The file was unreadable or corrupt and was moved to `moved_to`.
    Corrupt {
        /// Why it was rejected.
        error: String,
        /// Where it is now (`None` if moving it failed too).
        moved_to: Option<PathBuf>,
    },
}

/// Reads the state file at `path`.
pub fn load(path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(err) => {
            return Loaded::Corrupt {
                error: format!("cannot read: {err}"),
                moved_to: None,
            };
        }
    };
    match serde_json::from_slice::<PersistedState>(&bytes) {
        Ok(state) if state.version <= VERSION => Loaded::Found(state),
        Ok(state) => Loaded::Corrupt {
            error: format!("unsupported version {}", state.version),
            moved_to: move_aside(path),
        },
        Err(err) => Loaded::Corrupt {
            error: format!("not a pairgate state file: {err}"),
            moved_to: move_aside(path),
        },
    }
}

fn move_aside(path: &Path) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(format!(".corrupt-{}", now_unix_ms()));
    let to = path.with_file_name(name);
    std::fs::rename(path, &to).ok().map(|()| to)
}

/// Writes `state` to `path` atomically: readers see the old file or the new one, never a torn
/// one, and a crash leaves one of the two.
pub fn save(path: &Path, state: &PersistedState) -> std::io::Result<()> {
    let mut state = state.clone();
    state.version = VERSION;
    let json = serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    // Persist the rename itself.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the temporary files `save` writes next to `path` (`NAME.tmp-PID`) that a crash
/// between writing and renaming left behind; returns those removed. Call it once at start,
/// before any `save`.
pub fn remove_leftovers(path: &Path) -> Vec<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let mut prefix = name.to_os_string();
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pairgate-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("state.json")
    }

    #[test]
    fn round_trips_and_reports_missing() {
        let path = temp("rt");
        assert!(matches!(load(&path), Loaded::Missing));
        let mut state = PersistedState::default();
        state.tenants.insert(
            "contoso".into(),
            Override {
                value: "secondary".into(),
                reason: "drill".into(),
                source: operator(),
                at_unix_ms: 7,
            },
        );
        save(&path, &state).expect("save");
        match load(&path) {
            Loaded::Found(found) => {
                assert_eq!(found.tenants, state.tenants);
                assert_eq!(found.version, VERSION);
            }
            other => panic!("expected Found, got {other:?}"),
        }
    }

    #[test]
    fn holder_ids_parse_back_and_order_as_their_ids() {
        let cases: [(&str, Option<Holder>); 6] = [
            ("operator", Some(Holder::Operator)),
            (
                "incident:4K_2-VT8",
                Some(Holder::Incident("4K_2-VT8".into())),
            ),
            ("incident:", None),
            ("Operator", None),
            ("", None),
            ("someone", None),
        ];
        for (id, want) in cases {
            assert_eq!(Holder::parse(id), want, "{id:?}");
            if let Some(holder) = want {
                assert_eq!(holder.id(), id);
            }
        }
        let mut holders = [
            Holder::Operator,
            Holder::Incident("b".into()),
            Holder::Incident("A".into()),
            Holder::Incident("a".into()),
        ];
        holders.sort();
        let mut ids: Vec<String> = holders.iter().map(Holder::id).collect();
        let sorted = ids.clone();
        ids.sort();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn typed_overrides_round_trip_and_unreadable_entries_are_reported() {
        let note = |reason: &str| Note {
            reason: reason.into(),
            source: "operator".into(),
            at_unix_ms: 9,
        };
        let mut typed = Overrides::default();
        typed.pins.insert(
            "contoso".into(),
            Pin {
                side: Side::Secondary,
                note: note("drill"),
            },
        );
        typed.holds.entry("eastus".into()).or_default().extend([
            (Holder::Operator, note("maintenance")),
            (Holder::Incident("X1".into()), note("incident")),
        ]);
        typed
            .account_holds
            .entry("east-a".into())
            .or_default()
            .insert(
                Holder::Incident("4K_2-VT8".into()),
                note("subscription 1111"),
            );
        let persisted = typed.to_persisted();
        assert_eq!(
            persisted.account_holds["east-a"]["incident:4K_2-VT8"].reason,
            "subscription 1111"
        );
        assert_eq!(persisted.version, VERSION);
        assert_eq!(persisted.tenants["contoso"].value, "secondary");
        let ids: Vec<&String> = persisted.region_holds["eastus"].keys().collect();
        assert_eq!(ids, ["incident:X1", "operator"]);
        assert_eq!(persisted.region_holds["eastus"]["operator"].value, "down");
        let (back, unreadable) = Overrides::from_persisted(persisted.clone());
        assert_eq!(back, typed);
        assert!(unreadable.is_empty());

        let mut odd = persisted;
        odd.tenants.insert(
            "fabrikam".into(),
            Override {
                value: "sideways".into(),
                reason: String::new(),
                source: operator(),
                at_unix_ms: 1,
            },
        );
        let westus = odd.region_holds.entry("westus".into()).or_default();
        westus.insert("robot".into(), odd.tenants["fabrikam"].clone());
        let (back, unreadable) = Overrides::from_persisted(odd);
        assert_eq!(back, typed, "unreadable entries are dropped, not guessed");
        assert_eq!(
            unreadable,
            [
                Unreadable::Pin("fabrikam".into()),
                Unreadable::Hold("westus".into(), "robot".into())
            ]
        );
    }

    #[test]
    fn version_1_region_marks_become_holds() {
        let path = temp("v1");
        std::fs::write(
            &path,
            r#"{"version": 1, "tenants": {},
                "regions": {
                  "eastus": {"value": "down", "reason": "azure service health incident 4K_2-VT8", "source": "azure-monitor", "at_unix_ms": 5},
                  "westus": {"value": "down", "reason": "maintenance", "at_unix_ms": 6}
                }}"#,
        )
        .expect("write");
        let Loaded::Found(found) = load(&path) else {
            panic!("a version 1 file must load");
        };
        let found = found.holds();
        assert!(found.regions.is_empty());
        let holders = |r: &str| -> Vec<String> { found.region_holds[r].keys().cloned().collect() };
        assert_eq!(holders("eastus"), ["incident:4K_2-VT8"]);
        assert_eq!(holders("westus"), ["operator"]);
        assert_eq!(found.region_holds["westus"]["operator"].source, "operator");
        // Written back as version 2, holds only.
        save(&path, &found).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("region_holds") && !text.contains("\"regions\""),
            "{text}"
        );
        let Loaded::Found(again) = load(&path) else {
            panic!("reload");
        };
        assert_eq!(again.holds().region_holds, found.region_holds);
    }

    #[test]
    fn leftover_temporary_files_are_removed_and_nothing_else() {
        let path = temp("leftovers");
        let dir = path.parent().expect("dir").to_path_buf();
        let keep = [
            "state.json",
            "state.json.corrupt-1",
            "other.tmp-1",
            "state.jsonx.tmp-1",
        ];
        for name in keep {
            std::fs::write(dir.join(name), b"{}").expect("write");
        }
        let gone = ["state.json.tmp-1", "state.json.tmp-424242"];
        for name in gone {
            std::fs::write(dir.join(name), b"{\"tenants\": ").expect("write");
        }
        let mut removed = remove_leftovers(&path);
        removed.sort();
        assert_eq!(removed, gone.map(|n| dir.join(n)).to_vec());
        for name in keep {
            assert!(dir.join(name).exists(), "{name} was removed");
        }
        for name in gone {
            assert!(!dir.join(name).exists(), "{name} was left");
        }
    }

    #[test]
    fn a_failed_save_reports_the_error_and_leaves_no_temporary_file() {
        // The state path is a directory: the rename fails, as it would for root too.
        let path = temp("is-a-dir");
        std::fs::create_dir_all(&path).expect("dir");
        let err = save(&path, &PersistedState::default()).expect_err("saving over a directory");
        assert!(!err.to_string().is_empty());
        let dir = path.parent().expect("dir");
        let names: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["state.json".to_owned()], "leftovers: {names:?}");
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_dropped() {
        let path = temp("corrupt");
        std::fs::write(&path, b"{\"tenants\": [oops").expect("write");
        match load(&path) {
            Loaded::Corrupt {
                error,
                moved_to: Some(to),
            } => {
                assert!(error.contains("not a pairgate state file"), "{error}");
                assert!(!path.exists(), "corrupt file left in place");
                assert_eq!(
                    std::fs::read(&to).expect("moved file"),
                    b"{\"tenants\": [oops"
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

//! The etcd key schema under the prefix, and the values stored there as serde types.

use std::fmt;

use pairgate_failover::{Health, Mode, RegionOverride, Side};
use serde::{Deserialize, Serialize};

/// One key under the fleet's prefix (the prefix itself stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// `replicas/NAME`: presence, under the replica's lease.
    Replica(&'a str),
    /// `heartbeat/NAME`: the counter a replica expects back on its own watch.
    Heartbeat(&'a str),
    /// `health/ACCOUNT/REPLICA`: one prober's verdict, under its lease.
    Vote {
        /// Account name.
        account: &'a str,
        /// The replica that voted.
        replica: &'a str,
    },
    /// `decisions/TENANT`: a committed [`Decision`], written only by compare-and-swap.
    Decision(&'a str),
    /// `pins/TENANT`: an operator's [`Pin`].
    Pin(&'a str),
    /// `regions/REGION`: the fleet's [`RegionState`].
    Region(&'a str),
    /// `config/KIND/NAME`: one TOML object (`region`, `account` or `tenant`).
    Config {
        /// `region`, `account` or `tenant`.
        kind: &'a str,
        /// The object's name.
        name: &'a str,
    },
    /// `events/REPLICA/SEQ`: what a replica did.
    Event {
        /// The replica.
        replica: &'a str,
        /// Its sequence number.
        seq: u64,
    },
}

impl<'a> Key<'a> {
    /// Reads a key with the prefix already stripped; `None` for anything outside the schema.
    pub fn parse(rest: &'a str) -> Option<Key<'a>> {
        let mut parts = rest.splitn(3, '/');
        let key = match (parts.next()?, parts.next()?, parts.next()) {
            ("replicas", name, None) => Key::Replica(name),
            ("heartbeat", name, None) => Key::Heartbeat(name),
            ("health", account, Some(replica)) => Key::Vote { account, replica },
            ("decisions", tenant, None) => Key::Decision(tenant),
            ("pins", tenant, None) => Key::Pin(tenant),
            ("regions", region, None) => Key::Region(region),
            ("config", kind, Some(name)) => Key::Config { kind, name },
            ("events", replica, Some(seq)) => Key::Event {
                replica,
                seq: seq.parse().ok()?,
            },
            _ => return None,
        };
        Some(key)
    }

    /// The key under `prefix`.
    pub fn under(&self, prefix: &str) -> String {
        format!("{prefix}{self}")
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Replica(name) => write!(f, "replicas/{name}"),
            Key::Heartbeat(name) => write!(f, "heartbeat/{name}"),
            Key::Vote { account, replica } => write!(f, "health/{account}/{replica}"),
            Key::Decision(tenant) => write!(f, "decisions/{tenant}"),
            Key::Pin(tenant) => write!(f, "pins/{tenant}"),
            Key::Region(region) => write!(f, "regions/{region}"),
            Key::Config { kind, name } => write!(f, "config/{kind}/{name}"),
            // Zero-padded so the keys sort in sequence order.
            Key::Event { replica, seq } => write!(f, "events/{replica}/{seq:020}"),
        }
    }
}

/// A side as stored (`"primary"`, `"secondary"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredSide {
    /// [`Side::Primary`].
    Primary,
    /// [`Side::Secondary`].
    Secondary,
}

impl From<Side> for StoredSide {
    fn from(side: Side) -> Self {
        match side {
            Side::Primary => StoredSide::Primary,
            Side::Secondary => StoredSide::Secondary,
        }
    }
}

impl From<StoredSide> for Side {
    fn from(side: StoredSide) -> Self {
        match side {
            StoredSide::Primary => Side::Primary,
            StoredSide::Secondary => Side::Secondary,
        }
    }
}

/// `decisions/TENANT`: the side every replica serves, at an epoch that only grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The side.
    pub side: StoredSide,
    /// Whether the tenant's requests are refused (both sides down).
    #[serde(default)]
    pub reject: bool,
    /// One more than the decision it replaced (the first is 1).
    pub epoch: u64,
    /// The transition's cause label.
    #[serde(default = "default_cause")]
    pub cause: String,
    /// The replica that committed it.
    #[serde(default)]
    pub by: String,
}

fn default_cause() -> String {
    "fleet_decision".to_owned()
}

/// A pin's mode as stored: `"auto"`, `"primary"` or `"secondary"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredMode {
    /// [`Mode::Auto`].
    Auto,
    /// Pinned to the primary.
    Primary,
    /// Pinned to the secondary.
    Secondary,
}

impl From<Mode> for StoredMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Auto => StoredMode::Auto,
            Mode::Pinned(Side::Primary) => StoredMode::Primary,
            Mode::Pinned(Side::Secondary) => StoredMode::Secondary,
        }
    }
}

impl From<StoredMode> for Mode {
    fn from(mode: StoredMode) -> Self {
        match mode {
            StoredMode::Auto => Mode::Auto,
            StoredMode::Primary => Mode::Pinned(Side::Primary),
            StoredMode::Secondary => Mode::Pinned(Side::Secondary),
        }
    }
}

/// `pins/TENANT`: an operator's pin. Clearing it is a write of `auto`, never a delete, so it
/// gets the same revision check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The mode.
    pub mode: StoredMode,
    /// The operator's reason.
    #[serde(default)]
    pub reason: String,
    /// The replica that wrote it.
    #[serde(default)]
    pub by: String,
}

impl Pin {
    /// Reads a stored pin; an unreadable one counts as `auto` (the safe side of an override).
    pub fn read(value: &[u8]) -> Pin {
        serde_json::from_slice(value).unwrap_or(Pin {
            mode: StoredMode::Auto,
            reason: String::new(),
            by: String::new(),
        })
    }
}

/// A region's state as stored: `"down"` or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredRegionState {
    /// [`RegionOverride::Auto`].
    Auto,
    /// [`RegionOverride::Down`].
    Down,
}

impl From<RegionOverride> for StoredRegionState {
    fn from(state: RegionOverride) -> Self {
        match state {
            RegionOverride::Auto => StoredRegionState::Auto,
            RegionOverride::Down => StoredRegionState::Down,
        }
    }
}

impl From<StoredRegionState> for RegionOverride {
    fn from(state: StoredRegionState) -> Self {
        match state {
            StoredRegionState::Auto => RegionOverride::Auto,
            StoredRegionState::Down => RegionOverride::Down,
        }
    }
}

/// Who set a region's state: `"operator"` (admin API) or `"azure-monitor"` (an alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionSource {
    /// The admin API.
    #[serde(rename = "operator")]
    Operator,
    /// An Azure Monitor alert.
    #[serde(rename = "azure-monitor")]
    AzureMonitor,
}

impl RegionSource {
    /// The source label the controller records.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionSource::Operator => "operator",
            RegionSource::AzureMonitor => "azure-monitor",
        }
    }

    /// The label back; anything unknown is the operator.
    pub fn from_label(label: &str) -> RegionSource {
        if label == "azure-monitor" {
            RegionSource::AzureMonitor
        } else {
            RegionSource::Operator
        }
    }
}

/// `regions/REGION`: the fleet keeps **one state per region**, not one hold per holder (see
/// ARCHITECTURE.md, "Fleet mode").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    /// Down or auto.
    pub state: StoredRegionState,
    /// The operator's reason or the alert's tracking id.
    #[serde(default)]
    pub reason: String,
    /// Who set it.
    #[serde(default = "operator")]
    pub source: RegionSource,
    /// The replica that wrote it.
    #[serde(default)]
    pub by: String,
}

fn operator() -> RegionSource {
    RegionSource::Operator
}

impl RegionState {
    /// Reads a stored state; an unreadable one counts as `auto`, from the operator.
    pub fn read(value: &[u8]) -> RegionState {
        serde_json::from_slice(value).unwrap_or(RegionState {
            state: StoredRegionState::Auto,
            reason: String::new(),
            source: RegionSource::Operator,
            by: String::new(),
        })
    }
}

/// A vote as stored (`health/ACCOUNT/REPLICA`): the verdict's name; anything else is unknown.
pub fn read_vote(value: &[u8]) -> Health {
    match value {
        b"healthy" => Health::Healthy,
        b"unhealthy" => Health::Unhealthy,
        _ => Health::Unknown,
    }
}

#[cfg(test)]
mod tests;

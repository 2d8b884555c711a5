//! The sans-IO core: what a replica knows of the fleet, changed only by keys read from etcd and
//! by this replica's own verdicts and commits, answering with [`Effect`]s for the shell to carry
//! out in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pairgate_failover::{Health, Mode, RegionOverride, Side};
use pairgate_health::{Holder, Proposal, RegionChange};

use crate::schema::{Decision, Key, Pin, RegionState, read_vote};
use crate::votes;

/// What the shell must do after a change to the [`View`], in the order given: controller
/// commands are sent in this order on one channel, so the controller applies them in the order
/// of the etcd revisions that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Adopt a committed decision.
    Adopt {
        /// Tenant name.
        tenant: String,
        /// Committed side.
        side: Side,
        /// Committed reject flag.
        reject: bool,
        /// The decision's epoch.
        epoch: u64,
        /// Its cause label.
        cause: String,
    },
    /// The fleet's verdict on an account changed.
    FleetVerdict {
        /// Account name.
        account: String,
        /// The new verdict.
        health: Health,
    },
    /// Apply a pin (or its removal).
    SetMode {
        /// Tenant name.
        tenant: String,
        /// The mode.
        mode: Mode,
        /// The operator's reason.
        reason: String,
    },
    /// Apply a region state.
    SetRegion {
        /// Region name.
        region: String,
        /// What happens to its holds.
        change: RegionChange,
        /// The reason stored with it.
        reason: String,
        /// `operator` or `azure-monitor`.
        source: &'static str,
    },
    /// The set of live replicas changed: the probe assignment may have moved.
    ReplicasChanged,
    /// The config objects changed: reload them.
    ConfigChanged,
    /// This replica's verdict on an account differs from the fleet's, and differs from what
    /// was last reported for it: reported once per change, not once per round.
    Disagreement {
        /// Account name.
        account: String,
        /// This replica's verdict.
        local: Health,
        /// The fleet's.
        fleet: Health,
    },
}

/// A committed decision as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Committed {
    /// The key's `mod_revision`: the next compare-and-swap expects it, and an older change of
    /// the key is never applied after it.
    revision: i64,
    side: Side,
    reject: bool,
    epoch: u64,
    cause: String,
}

/// Revisions of an override key (`pins/T`, `regions/R`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OverrideRevision {
    /// What the next compare-and-swap expects (0: the key is absent).
    expected: i64,
    /// The newest revision applied: changes at or below it are old news.
    applied: i64,
}

/// The fleet as this replica sees it. Rebuilt from a full read on every (re)connect
/// ([`View::reset`]), kept current by the watch.
#[derive(Debug, Default)]
pub struct View {
    probers_per_account: usize,
    replicas: BTreeSet<String>,
    /// account -> replica -> verdict.
    votes: BTreeMap<String, BTreeMap<String, Health>>,
    fleet: HashMap<String, Health>,
    local: HashMap<String, Health>,
    decisions: HashMap<String, Committed>,
    pins: HashMap<String, OverrideRevision>,
    regions: HashMap<String, OverrideRevision>,
    /// `region/NAME`, `account/NAME`, `tenant/NAME` -> TOML object.
    objects: BTreeMap<String, String>,
    /// Accounts whose local verdict differs from the fleet's now (the gauge).
    disagreeing: BTreeSet<String>,
    /// The last (local, fleet) pair reported per account; kept across resyncs, cleared when
    /// the replica agrees again.
    reported: BTreeMap<String, (Health, Health)>,
}

impl View {
    /// An empty view; `probers_per_account` replicas probe each account.
    pub fn new(probers_per_account: usize) -> View {
        View {
            probers_per_account,
            ..View::default()
        }
    }

    /// Forgets everything read from etcd before a full read; keeps this replica's own
    /// verdicts and the disagreements already reported (a resync does not report them again).
    pub fn reset(&mut self) {
        *self = View {
            probers_per_account: self.probers_per_account,
            local: std::mem::take(&mut self.local),
            reported: std::mem::take(&mut self.reported),
            ..View::default()
        };
    }

    /// Applies one key change (`rest`: the key without the prefix) and appends what follows to
    /// `out`. Changes older than one already applied to the same decision, pin or region key
    /// are ignored, so the result does not depend on who applied the newer one first (the
    /// watch, or this replica's own write).
    pub fn apply(
        &mut self,
        rest: &str,
        value: &[u8],
        mod_revision: i64,
        deleted: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(key) = Key::parse(rest) else {
            return;
        };
        match key {
            Key::Replica(name) => {
                let changed = if deleted {
                    self.replicas.remove(name)
                } else {
                    self.replicas.insert(name.to_owned())
                };
                if changed {
                    self.recompute_all(out);
                    out.push(Effect::ReplicasChanged);
                }
            }
            Key::Vote { account, replica } => {
                let votes = self.votes.entry(account.to_owned()).or_default();
                if deleted {
                    votes.remove(replica);
                } else {
                    votes.insert(replica.to_owned(), read_vote(value));
                }
                self.recompute(account, out);
            }
            Key::Decision(tenant) if !deleted => {
                if self
                    .decisions
                    .get(tenant)
                    .is_some_and(|d| d.revision >= mod_revision)
                {
                    return;
                }
                let Ok(decision) = serde_json::from_slice::<Decision>(value) else {
                    tracing::warn!(tenant, "ignoring an unreadable decision in etcd");
                    return;
                };
                out.push(self.committed(tenant, mod_revision, &decision));
            }
            Key::Pin(tenant) => {
                if fresh(&mut self.pins, tenant, mod_revision, deleted).is_none() {
                    return;
                }
                let (mode, reason) = if deleted {
                    (Mode::Auto, "pin removed".to_owned())
                } else {
                    let pin = Pin::read(value);
                    (pin.mode.into(), pin.reason)
                };
                out.push(Effect::SetMode {
                    tenant: tenant.to_owned(),
                    mode,
                    reason,
                });
            }
            Key::Region(region) => {
                if fresh(&mut self.regions, region, mod_revision, deleted).is_none() {
                    return;
                }
                let state = if deleted {
                    RegionState::read(b"")
                } else {
                    RegionState::read(value)
                };
                out.push(Effect::SetRegion {
                    region: region.to_owned(),
                    change: region_change(state.state.into()),
                    reason: state.reason,
                    source: state.source.as_str(),
                });
            }
            Key::Config { kind, name } => {
                let key = format!("{kind}/{name}");
                if deleted {
                    self.objects.remove(&key);
                } else {
                    self.objects
                        .insert(key, String::from_utf8_lossy(value).into_owned());
                }
                out.push(Effect::ConfigChanged);
            }
            Key::Decision(_) | Key::Heartbeat(_) | Key::Event { .. } => {}
        }
    }

    /// Records a decision committed at `revision` (read from the watch, or written by this
    /// replica) and answers the adoption to send.
    pub fn committed(&mut self, tenant: &str, revision: i64, decision: &Decision) -> Effect {
        let committed = Committed {
            revision,
            side: decision.side.into(),
            reject: decision.reject,
            epoch: decision.epoch,
            cause: decision.cause.clone(),
        };
        let effect = adopt(tenant, &committed);
        self.decisions.insert(tenant.to_owned(), committed);
        effect
    }

    /// The decision that would commit `proposal`, and the revision its compare-and-swap must
    /// find: the next epoch. `None` when the fleet already decided the same (or, for a tenant
    /// with no decision yet, when the proposal is the default: primary, not rejecting).
    pub fn decision_for(&self, proposal: &Proposal, by: &str) -> Option<(i64, Decision)> {
        let (revision, epoch, same) = match self.decisions.get(&*proposal.tenant) {
            Some(d) => (
                d.revision,
                d.epoch,
                d.side == proposal.side && d.reject == proposal.reject,
            ),
            None => (0, 0, proposal.side == Side::Primary && !proposal.reject),
        };
        (!same).then(|| {
            (
                revision,
                Decision {
                    side: proposal.side.into(),
                    reject: proposal.reject,
                    epoch: epoch + 1,
                    cause: proposal.cause.to_owned(),
                    by: by.to_owned(),
                },
            )
        })
    }

    /// Cut off from etcd with `isolated_failover = "act"`: the epoch a decision taken alone
    /// gets (the fleet's decisions win again at the resync).
    pub fn isolated_epoch(&self, tenant: &str) -> u64 {
        self.decisions.get(tenant).map_or(0, |d| d.epoch) + 1
    }

    /// This replica's own verdict on `account` changed.
    pub fn set_local(&mut self, account: &str, health: Health, out: &mut Vec<Effect>) {
        self.local.insert(account.to_owned(), health);
        self.recompute(account, out);
    }

    /// Records this replica's own verdict without recomputing anything (cut off from etcd:
    /// it is published at the next connect).
    pub fn record_local(&mut self, account: &str, health: Health) {
        self.local.insert(account.to_owned(), health);
    }

    /// This replica's own verdicts (re-published at every connect).
    pub fn local(&self) -> Vec<(String, Health)> {
        self.local.iter().map(|(a, h)| (a.clone(), *h)).collect()
    }

    /// Recomputes every account's fleet verdict (after the replica set changed, or a resync).
    pub fn recompute_all(&mut self, out: &mut Vec<Effect>) {
        let accounts: Vec<String> = self.votes.keys().cloned().collect();
        for account in accounts {
            self.recompute(&account, out);
        }
    }

    /// The fleet's verdict on `account`, and this replica's disagreement with it.
    fn recompute(&mut self, account: &str, out: &mut Vec<Effect>) {
        let assigned = votes::assigned(&self.replicas, account, self.probers_per_account);
        let verdict = self
            .votes
            .get(account)
            .and_then(|votes| votes::verdict(&assigned, votes));
        if let Some(v) = verdict
            && self.fleet.get(account) != Some(&v)
        {
            self.fleet.insert(account.to_owned(), v);
            out.push(Effect::FleetVerdict {
                account: account.to_owned(),
                health: v,
            });
        }
        let local = self.local.get(account).copied();
        let fleet = self.fleet.get(account).copied();
        match (local, fleet) {
            (Some(l), Some(f)) if l != f && l != Health::Unknown => {
                self.disagreeing.insert(account.to_owned());
                if self.reported.get(account) != Some(&(l, f)) {
                    self.reported.insert(account.to_owned(), (l, f));
                    out.push(Effect::Disagreement {
                        account: account.to_owned(),
                        local: l,
                        fleet: f,
                    });
                }
            }
            (Some(l), Some(f)) if l == f => {
                self.disagreeing.remove(account);
                self.reported.remove(account);
            }
            // No local opinion (yet, or a prober restarting): no disagreement now, but the
            // last report stands, so the same disagreement coming back is not news.
            _ => {
                self.disagreeing.remove(account);
            }
        }
    }

    /// Every committed decision and fleet verdict again: after a reload that added tenants
    /// or accounts, whose decisions and verdicts the controller had ignored.
    pub fn resend(&self) -> Vec<Effect> {
        let mut out: Vec<Effect> = self
            .decisions
            .iter()
            .map(|(tenant, d)| adopt(tenant, d))
            .collect();
        out.extend(
            self.fleet
                .iter()
                .map(|(account, &health)| Effect::FleetVerdict {
                    account: account.clone(),
                    health,
                }),
        );
        out
    }

    /// The revision a pin write without an explicit one must find (0: no pin key).
    pub fn pin_revision(&self, tenant: &str) -> i64 {
        self.pins.get(tenant).map_or(0, |r| r.expected)
    }

    /// The revision a region write without an explicit one must find (0: no region key).
    pub fn region_revision(&self, region: &str) -> i64 {
        self.regions.get(region).map_or(0, |r| r.expected)
    }

    /// This replica wrote `pins/TENANT` at `revision`: whether to apply it now (false when
    /// the watch already brought that change or a newer one).
    pub fn wrote_pin(&mut self, tenant: &str, revision: i64) -> bool {
        fresh(&mut self.pins, tenant, revision, false).is_some()
    }

    /// This replica wrote `regions/REGION` at `revision`: whether to apply it now.
    pub fn wrote_region(&mut self, region: &str, revision: i64) -> bool {
        fresh(&mut self.regions, region, revision, false).is_some()
    }

    /// The fleet's config objects (`region/NAME` etc. -> TOML).
    pub fn objects(&self) -> &BTreeMap<String, String> {
        &self.objects
    }

    /// The live replicas.
    pub fn replicas(&self) -> &BTreeSet<String> {
        &self.replicas
    }

    /// The probers per account this view assigns.
    pub fn probers_per_account(&self) -> usize {
        self.probers_per_account
    }

    /// How many accounts this replica disagrees on now.
    pub fn disagreements(&self) -> usize {
        self.disagreeing.len()
    }
}

/// Records `revision` for an override key unless it is old news; answers the revision the next
/// compare-and-swap expects, or `None` for a change at or below the one already applied.
fn fresh(
    revisions: &mut HashMap<String, OverrideRevision>,
    name: &str,
    revision: i64,
    deleted: bool,
) -> Option<i64> {
    let entry = revisions.entry(name.to_owned()).or_default();
    if revision <= entry.applied {
        return None;
    }
    entry.applied = revision;
    entry.expected = if deleted { 0 } else { revision };
    Some(entry.expected)
}

fn adopt(tenant: &str, d: &Committed) -> Effect {
    Effect::Adopt {
        tenant: tenant.to_owned(),
        side: d.side,
        reject: d.reject,
        epoch: d.epoch,
        cause: d.cause.clone(),
    }
}

/// The fleet keeps one state per region (`regions/NAME`), and every replica applies it as is:
/// `down` is one hold (the operator's), `auto` releases every hold.
pub fn region_change(state: RegionOverride) -> RegionChange {
    match state {
        RegionOverride::Down => RegionChange::Hold(Holder::Operator),
        RegionOverride::Auto => RegionChange::ReleaseAll,
    }
}

#[cfg(test)]
mod tests;

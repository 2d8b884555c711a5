//! Publishing transitions (slot stores, or fleet proposals) and adopting fleet decisions.

use std::sync::Arc;
use std::time::Instant;

use pairgate_failover::{Cause, CauseLabel, Side, Transition};
use pairgate_routing::Active;

use super::Controller;
use super::protocol::{FleetLink, Proposal};
use crate::events::{CauseInfo, EventKind};
use crate::monitor::Verdict;

/// Transitions in one batch above which each one is logged at debug level and only a summary
/// at info: a region move of 100k tenants must not flood the log.
const LOG_EACH_UP_TO: usize = 64;

/// Where the controller's decisions go; chosen once, at start.
pub(super) enum Publishing {
    /// Standalone: this replica's verdicts decide, transitions are stored into the slots, and
    /// the state file is the durable copy of the overrides (a change it cannot hold is refused).
    Local,
    /// Fleet mode: this replica's verdicts are one vote (forwarded to the fleet), transitions
    /// are proposals stored only once the fleet commits them (`adopt`), and etcd is the durable
    /// copy of the overrides (a change the state file cannot hold is recorded and applied).
    Fleet(FleetLink),
}

impl Publishing {
    /// Whether a change the state file cannot hold is refused (standalone) rather than applied.
    pub(super) fn refuses_unsaved(&self) -> bool {
        matches!(self, Publishing::Local)
    }
}

impl Controller {
    /// A prober's verdict changed: standalone, it decides; in fleet mode it is this replica's
    /// vote, forwarded, and the fleet's verdict (`FleetVerdict`) decides.
    pub(super) fn local_verdict(&mut self, verdict: &Verdict) {
        let Publishing::Fleet(link) = &self.publishing else {
            self.apply_verdict(verdict);
            return;
        };
        if let Some(id) = self.table.account_id_by_key(&verdict.key) {
            let name = Arc::clone(&self.table.account(id).name);
            tracing::info!(
                account = &*name,
                health = verdict.health.as_str(),
                reason = verdict.reason,
                "local verdict changed"
            );
            let _ = link.local_verdicts.send((name, verdict.health));
        }
    }

    /// Fleet mode: sets a tenant to the fleet's committed decision and publishes it.
    pub(super) fn adopt(
        &mut self,
        tenant: &str,
        side: Side,
        reject: bool,
        epoch: u64,
        cause: &str,
    ) {
        let Some(&t) = self.tenant_index.get(tenant) else {
            return;
        };
        let transitions = self.engine.adopt(t, side, reject, epoch, Instant::now());
        // The slot carries the epoch even when the side did not change here (this replica's
        // engine had already moved): every replica serves the same side at the same epoch.
        self.table.tenants()[t].slot.store(Active {
            side,
            reject,
            generation: self.engine.tenant(t).generation,
        });
        let Some(moved) = transitions.first() else {
            return;
        };
        let label = cause
            .parse::<CauseLabel>()
            .unwrap_or(CauseLabel::Fleet)
            .as_str();
        tracing::info!(
            tenant,
            to = side.as_str(),
            reject,
            epoch,
            cause = label,
            "tenant moved by fleet decision"
        );
        *self
            .transitions
            .entry((self.primary_region(t), label))
            .or_default() += 1;
        self.events.push(EventKind::Transition {
            tenant: Arc::clone(&self.table.tenants()[t].name),
            from: moved.from,
            to: side,
            reject,
            cause: CauseInfo {
                label,
                region: None,
            },
            generation: self.engine.tenant(t).generation,
        });
    }

    /// The region of tenant `t`'s primary account: the region a failover leaves and a failback
    /// returns to, the `region` label of the transition metrics.
    fn primary_region(&self, t: usize) -> Arc<str> {
        let primary = self.table.account(self.table.tenants()[t].primary);
        Arc::clone(&self.table.region(primary.region).name)
    }

    /// Stores each transition into its tenant's slot (one atomic store each), then logs it. In
    /// fleet mode, transitions are proposals instead: nothing is stored until the fleet commits.
    pub(super) fn publish(&mut self, transitions: &[Transition]) {
        if transitions.is_empty() {
            return;
        }
        if let Publishing::Fleet(link) = &self.publishing {
            for t in transitions {
                let _ = link.proposals.send(Proposal {
                    tenant: Arc::clone(&self.table.tenants()[t.tenant].name),
                    side: t.to,
                    reject: t.reject,
                    cause: self.label(t.cause),
                });
            }
            return;
        }
        for t in transitions {
            let key = (self.primary_region(t.tenant), self.label(t.cause));
            *self.transitions.entry(key).or_default() += 1;
            self.table.tenants()[t.tenant].slot.store(Active {
                side: t.to,
                reject: t.reject,
                generation: t.generation,
            });
        }
        let quiet = transitions.len() > LOG_EACH_UP_TO;
        let events = transitions.iter().map(|t| {
            let tenant = &self.table.tenants()[t.tenant];
            let cause = self.cause_info(t.cause);
            if quiet {
                tracing::debug!(
                    tenant = &*tenant.name,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reject = t.reject,
                    cause = cause.label,
                    generation = t.generation,
                    "tenant moved"
                );
            } else {
                tracing::info!(
                    tenant = &*tenant.name,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reject = t.reject,
                    cause = cause.label,
                    region = cause.region.as_deref(),
                    generation = t.generation,
                    "tenant moved"
                );
            }
            EventKind::Transition {
                tenant: Arc::clone(&tenant.name),
                from: t.from,
                to: t.to,
                reject: t.reject,
                cause,
                generation: t.generation,
            }
        });
        self.events.extend(events);
        if quiet {
            tracing::info!(
                tenants = transitions.len(),
                "batch of tenant transitions published"
            );
        }
    }

    pub(super) fn cause_info(&self, cause: Cause) -> CauseInfo {
        let region = match cause {
            Cause::RegionOutage { region } | Cause::RegionMarkedDown { region } => {
                Some(Arc::clone(&self.table.regions()[region].name))
            }
            _ => None,
        };
        CauseInfo {
            label: self.label(cause),
            region,
        }
    }

    /// The cause's label; while an ejection is being published, a move away from the ejected
    /// account is `passive_5xx`.
    pub(super) fn label(&self, cause: Cause) -> &'static str {
        match cause {
            Cause::PrimaryUnhealthy | Cause::SecondaryUnhealthy if self.ejection => {
                CauseLabel::PassiveEjection.as_str()
            }
            _ => cause.label().as_str(),
        }
    }
}

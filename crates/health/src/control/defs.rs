//! Config-to-engine translation: the engine's definitions of regions, accounts and tenants.

use pairgate_config::{BothDown as ConfBothDown, Config, Failback as ConfFailback};
use pairgate_failover::{AccountDef, BothDown, Failback, Policy, RegionDef, TenantDef};
use pairgate_routing::RouteTable;

/// The engine's view of a config: regions, accounts by identity, tenants with their policies.
pub fn defs(
    config: &Config,
    table: &RouteTable,
) -> (Vec<RegionDef>, Vec<AccountDef>, Vec<TenantDef>) {
    let regions = config
        .regions
        .iter()
        .map(|r| RegionDef {
            name: r.name.clone(),
        })
        .collect();
    let accounts = table
        .accounts()
        .iter()
        .map(|a| AccountDef {
            key: a.key.to_string(),
            region: a.region.index(),
        })
        .collect();
    let tenants = config
        .tenants
        .iter()
        .map(|t| TenantDef {
            name: t.name.clone(),
            primary: t.primary,
            secondary: t.secondary,
            policy: Policy {
                failback: match t.failover.failback {
                    ConfFailback::Auto => Failback::Auto,
                    ConfFailback::Manual => Failback::Manual,
                },
                hold_down: t.failover.hold_down,
                both_down: match t.failover.both_down {
                    ConfBothDown::Stay => BothDown::Stay,
                    ConfBothDown::Reject => BothDown::Reject,
                },
                region_outage_ratio: t.failover.region_outage_ratio,
            },
        })
        .collect();
    (regions, accounts, tenants)
}

//! The benchmark's tenants and accounts, and the gateway config that describes them.
//!
//! Tenant `i` is `t{i}`, reached by `Host: t{i}.bench.local`, served by account pair
//! `i % pairs`: primary `east{p}` in region `eastus`, secondary `west{p}` in `westus`.

use std::fmt::Write as _;
use std::time::Duration;

/// Region of every primary account.
pub const PRIMARY_REGION: &str = "eastus";
/// Region of every secondary account.
pub const SECONDARY_REGION: &str = "westus";

/// Tenants and account pairs.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Number of tenants.
    pub tenants: usize,
    /// Number of account pairs.
    pub pairs: usize,
}

impl Layout {
    /// The pair serving tenant `i`.
    pub fn pair_of(&self, tenant: usize) -> usize {
        tenant % self.pairs
    }

    /// The `Host` of tenant `i`.
    pub fn host(tenant: usize) -> String {
        format!("t{tenant}.bench.local")
    }

    /// The name of tenant `i`.
    pub fn tenant_name(tenant: usize) -> String {
        format!("t{tenant}")
    }
}

/// Gateway settings the harness controls.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// `[runtime] worker_threads`.
    pub worker_threads: usize,
    /// `[health] interval`, when not the default.
    pub health_interval: Option<Duration>,
    /// `[upstream] response_header_timeout`, when not the default.
    pub response_timeout: Option<Duration>,
}

fn duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The gateway config: listeners on ephemeral loopback ports (the gateway logs the ports it
/// got), the regions, `pairs` account pairs at `east_urls[p]` / `west_urls[p]`, and the tenants.
pub fn gateway_config(
    layout: Layout,
    east_urls: &[String],
    west_urls: &[String],
    opts: &GatewayOptions,
) -> String {
    let mut t = String::with_capacity(layout.tenants * 110 + 2048);
    t.push_str("[listen]\nhttp = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n");
    let _ = writeln!(t, "[runtime]\nworker_threads = {}\n", opts.worker_threads);
    if let Some(d) = opts.response_timeout {
        let _ = writeln!(
            t,
            "[upstream]\nresponse_header_timeout = \"{}\"\n",
            duration(d)
        );
    }
    if let Some(d) = opts.health_interval {
        // The probe timeout must stay below the interval.
        let timeout = (d / 2).min(Duration::from_secs(1));
        let _ = writeln!(
            t,
            "[health]\ninterval = \"{}\"\ntimeout = \"{}\"\n",
            duration(d),
            duration(timeout)
        );
    }
    let _ = writeln!(
        t,
        "[[region]]\nname = \"{PRIMARY_REGION}\"\npair = \"{SECONDARY_REGION}\"\n\n\
         [[region]]\nname = \"{SECONDARY_REGION}\"\npair = \"{PRIMARY_REGION}\"\n"
    );
    for p in 0..layout.pairs {
        let _ = writeln!(
            t,
            "[[account]]\nname = \"east{p}\"\nregion = \"{PRIMARY_REGION}\"\nurl = \"{}\"\n\n\
             [[account]]\nname = \"west{p}\"\nregion = \"{SECONDARY_REGION}\"\nurl = \"{}\"\n",
            east_urls[p], west_urls[p]
        );
    }
    for i in 0..layout.tenants {
        let p = layout.pair_of(i);
        let _ = writeln!(
            t,
            "[[tenant]]\nname = \"t{i}\"\nhosts = [\"t{i}.bench.local\"]\nprimary = \"east{p}\"\nsecondary = \"west{p}\"\n"
        );
    }
    t
}

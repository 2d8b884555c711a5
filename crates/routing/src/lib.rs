//! The compiled, immutable routing snapshot: tenants, accounts, regions and `resolve_tenant`.
//!
//! A [`RouteTable`] is built once per config generation by [`RouteTable::compile`] and then only
//! read, through one `arc_swap` load per request in the data plane. The one thing in it that
//! changes is each tenant's [`ActiveSlot`]: a single atomic that the failover engine stores into
//! and the data plane loads, so a request sees the old side or the new one, never a mix.
//!
//! Invariants:
//! - this crate does no IO, takes no locks and never reads the environment;
//! - resolution cost does not grow with the number of tenants: hash lookups only, wildcard
//!   suffixes and path prefixes are pre-split at compile time;
//! - a miss is an error ([`Miss`]), never a default tenant;
//! - [`ActiveSlot`]s, account health cells and request counters are carried into the next snapshot by identity
//!   (tenant name; account name plus endpoint), so a reload never resets failover state.

pub mod counters;
pub mod local;
mod resolve;
mod slot;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use foldhash::fast::RandomState;
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue};
use pairgate_config::Config;

pub use pairgate_failover::{Health, Side};
pub use resolve::{Miss, Resolved};
pub use slot::{Active, ActiveSlot, HealthCell};

type Map<V> = HashMap<Box<str>, V, RandomState>;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            /// The index of this item in its table.
            pub fn index(self) -> usize {
                self.0 as usize
            }

            /// The id of the item at `index`.
            pub fn from_index(index: usize) -> Self {
                // Config sizes are far below u32::MAX (checked in `compile`).
                Self(u32::try_from(index).unwrap_or(u32::MAX))
            }
        }
    };
}

id_type!(
    /// Index of a tenant in a [`RouteTable`].
    TenantId
);
id_type!(
    /// Index of an account in a [`RouteTable`].
    AccountId
);
id_type!(
    /// Index of a region in a [`RouteTable`].
    RegionId
);

/// A compiled region.
#[derive(Debug)]
pub struct Region {
    /// Region name.
    pub name: Arc<str>,
    /// The paired region, if any.
    pub pair: Option<RegionId>,
    /// The region's name in cloud alerts, when it differs from `name`.
    pub azure_name: Option<Arc<str>>,
}

/// A compiled account: everything the data plane needs to send a request there.
#[derive(Debug)]
pub struct Account {
    /// Account name.
    pub name: Arc<str>,
    /// Identity used to carry state across reloads: name and endpoint.
    pub key: Arc<str>,
    /// The account's region.
    pub region: RegionId,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: Authority,
    /// Prebuilt `Host` header value (the authority).
    pub host_header: HeaderValue,
    /// Prepended to the forwarded path; empty when none.
    pub path_prefix: Box<str>,
    /// Injected headers, replacing client-sent values of the same name. Values from `${VAR}`
    /// are marked sensitive so hyper never logs them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether requests go out as HTTP/2.
    pub http2: bool,
    /// The account's health verdict, shared with the health controller and carried across
    /// reloads by `key`.
    pub health: Arc<HealthCell>,
    /// Requests this account answered, by side and status class; carried across reloads by
    /// `key`.
    pub counters: Arc<counters::AccountCounters>,
}

/// A compiled tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Tenant name.
    pub name: Arc<str>,
    /// Primary account.
    pub primary: AccountId,
    /// Secondary account, if the tenant has failover.
    pub secondary: Option<AccountId>,
    /// Which side is active, shared with the failover engine and carried across reloads.
    pub slot: Arc<ActiveSlot>,
    /// Body size and concurrency limits.
    pub limits: pairgate_config::TenantLimits,
    /// Requests in flight now (until their response body ends); carried across reloads.
    pub in_flight: Arc<AtomicUsize>,
    /// The tenant's own request counters: only the first `metrics.tenant_label_limit` tenants
    /// (config order) have them, the others count under `_other`. Carried across reloads.
    pub counters: Option<Arc<counters::TenantCounters>>,
}

impl Tenant {
    /// The account for `side`. A tenant without a secondary always answers its primary.
    pub fn account_for(&self, side: Side) -> AccountId {
        match side {
            Side::Primary => self.primary,
            Side::Secondary => self.secondary.unwrap_or(self.primary),
        }
    }
}

/// Why a validated config could not be compiled. Validation should make this unreachable; it
/// exists so that a validator gap becomes a rejected reload rather than a panic.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// An account's URL or header did not convert to its `http` type.
    #[error("account {account}: {what}")]
    Account {
        /// Account name.
        account: String,
        /// What failed.
        what: &'static str,
    },
    /// More than `u32::MAX` items.
    #[error("too many {0}")]
    TooMany(&'static str),
}

/// The immutable routing snapshot of one config generation.
#[derive(Debug)]
pub struct RouteTable {
    generation: u64,
    regions: Vec<Region>,
    accounts: Vec<Account>,
    tenants: Vec<Tenant>,
    by_name: Map<TenantId>,
    by_host: Map<TenantId>,
    by_wildcard: Map<TenantId>,
    by_prefix: Map<TenantId>,
    by_account_key: Map<AccountId>,
    /// Most `/`-separated segments in any tenant path prefix; bounds the prefix probe.
    max_prefix_segments: usize,
    tenant_header: Option<HeaderName>,
    /// The tenant header again when it is removed before forwarding (the default).
    strip_tenant_header: Option<HeaderName>,
}

impl RouteTable {
    /// Compiles a validated config. Slots of tenants that exist in `previous` (by name) are
    /// reused, so the active side and generation survive a reload.
    pub fn compile(
        config: &Config,
        generation: u64,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, CompileError> {
        if config.tenants.len() > u32::MAX as usize || config.accounts.len() > u32::MAX as usize {
            return Err(CompileError::TooMany("tenants or accounts"));
        }
        let regions = config
            .regions
            .iter()
            .map(|r| Region {
                name: r.name.as_str().into(),
                pair: r.pair.map(RegionId::from_index),
                azure_name: r.azure_name.as_deref().map(Arc::from),
            })
            .collect();
        let accounts = config
            .accounts
            .iter()
            .map(|a| compile_account(a, previous))
            .collect::<Result<Vec<_>, _>>()?;

        let by_account_key = accounts
            .iter()
            .enumerate()
            .map(|(i, a): (usize, &Account)| (Box::<str>::from(&*a.key), AccountId::from_index(i)))
            .collect();
        let n = config.tenants.len();
        let mut tenants = Vec::with_capacity(n);
        let mut by_name = Map::with_capacity_and_hasher(n, RandomState::default());
        let mut by_host = Map::with_capacity_and_hasher(n, RandomState::default());
        let mut by_wildcard = Map::default();
        let mut by_prefix = Map::default();
        let mut max_prefix_segments = 0;
        for (i, t) in config.tenants.iter().enumerate() {
            let id = TenantId::from_index(i);
            let old = previous.and_then(|p| p.tenant_by_name(&t.name));
            let slot = old.map(|o| Arc::clone(&o.slot)).unwrap_or_default();
            let in_flight = old.map(|o| Arc::clone(&o.in_flight)).unwrap_or_default();
            let counters = (i < config.metrics.tenant_label_limit)
                .then(|| old.and_then(|o| o.counters.clone()).unwrap_or_default());
            by_name.insert(t.name.as_str().into(), id);
            for host in &t.hosts {
                by_host.insert(host.as_str().into(), id);
            }
            for suffix in &t.wildcards {
                by_wildcard.insert(suffix.as_str().into(), id);
            }
            if let Some(prefix) = &t.path_prefix {
                max_prefix_segments = max_prefix_segments.max(prefix.matches('/').count());
                by_prefix.insert(prefix.as_str().into(), id);
            }
            tenants.push(Tenant {
                name: t.name.as_str().into(),
                primary: AccountId::from_index(t.primary),
                secondary: t.secondary.map(AccountId::from_index),
                slot,
                limits: t.limits,
                in_flight,
                counters,
            });
        }
        let tenant_header =
            match &config.routing.tenant_header {
                Some(name) => Some(HeaderName::try_from(name.as_str()).map_err(|_| {
                    CompileError::Account {
                        account: String::new(),
                        what: "routing.tenant_header is not a header name",
                    }
                })?),
                None => None,
            };
        Ok(RouteTable {
            generation,
            regions,
            accounts,
            tenants,
            by_name,
            by_host,
            by_wildcard,
            by_prefix,
            by_account_key,
            max_prefix_segments,
            strip_tenant_header: tenant_header
                .clone()
                .filter(|_| !config.routing.forward_tenant_header),
            tenant_header,
        })
    }

    /// The config generation this table was compiled from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// All tenants, indexed by [`TenantId`].
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// All accounts, indexed by [`AccountId`].
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// All regions, indexed by [`RegionId`].
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// One tenant.
    pub fn tenant(&self, id: TenantId) -> &Tenant {
        &self.tenants[id.index()]
    }

    /// One account.
    pub fn account(&self, id: AccountId) -> &Account {
        &self.accounts[id.index()]
    }

    /// One region.
    pub fn region(&self, id: RegionId) -> &Region {
        &self.regions[id.index()]
    }

    /// The tenant called `name`.
    pub fn tenant_by_name(&self, name: &str) -> Option<&Tenant> {
        self.by_name.get(name).map(|id| self.tenant(*id))
    }

    /// The account whose identity (name and endpoint) is `key`.
    pub fn account_by_key(&self, key: &str) -> Option<&Account> {
        self.by_account_key.get(key).map(|id| self.account(*id))
    }

    /// The id of the account whose identity is `key`.
    pub fn account_id_by_key(&self, key: &str) -> Option<AccountId> {
        self.by_account_key.get(key).copied()
    }

    /// The id of the tenant called `name`.
    pub fn tenant_id(&self, name: &str) -> Option<TenantId> {
        self.by_name.get(name).copied()
    }

    /// The header that names the tenant, when configured.
    pub fn tenant_header(&self) -> Option<&HeaderName> {
        self.tenant_header.as_ref()
    }

    /// The header to remove before forwarding: the tenant header, unless
    /// `routing.forward_tenant_header` keeps it (it names the tenant to a trusted front end, and
    /// an account has no use for a client's claim about it).
    pub fn strip_tenant_header(&self) -> Option<&HeaderName> {
        self.strip_tenant_header.as_ref()
    }
}

/// An account's identity across reloads: its name and endpoint. Health, probers, pooled and TLS
/// clients are carried or rebuilt by this key.
pub fn account_key(a: &pairgate_config::AccountConfig) -> Arc<str> {
    let scheme = match a.scheme {
        pairgate_config::Scheme::Http => "http",
        pairgate_config::Scheme::Https => "https",
    };
    format!("{}|{scheme}://{}", a.name, a.authority).into()
}

fn compile_account(
    a: &pairgate_config::AccountConfig,
    previous: Option<&RouteTable>,
) -> Result<Account, CompileError> {
    let fail = |what| CompileError::Account {
        account: a.name.clone(),
        what,
    };
    let scheme = match a.scheme {
        pairgate_config::Scheme::Http => Scheme::HTTP,
        pairgate_config::Scheme::Https => Scheme::HTTPS,
    };
    let authority = Authority::try_from(a.authority.as_str()).map_err(|_| fail("bad authority"))?;
    let host_header =
        HeaderValue::from_str(authority.as_str()).map_err(|_| fail("bad authority"))?;
    let headers = a
        .headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| fail("bad header name"))?;
            let mut value =
                HeaderValue::from_str(value.expose()).map_err(|_| fail("bad header value"))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let key = account_key(a);
    let old = previous.and_then(|p| p.account_by_key(&key));
    let health = old.map(|old| Arc::clone(&old.health)).unwrap_or_default();
    let counters = old.map(|old| Arc::clone(&old.counters)).unwrap_or_default();
    Ok(Account {
        name: a.name.as_str().into(),
        key,
        region: RegionId::from_index(a.region),
        scheme,
        authority,
        host_header,
        path_prefix: a.path_prefix.as_str().into(),
        headers,
        http2: a.http2,
        health,
        counters,
    })
}

#[cfg(test)]
mod tests;

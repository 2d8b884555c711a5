//! The mock accounts of a run: one `MockUpstream` per account, on a runtime of their own (its
//! threads are named `mock-*`, so their CPU time is told apart from the load generator's).

use std::time::Duration;

use anyhow::Context as _;
use pairgate_mock::{Behavior, FlapHandle, MockConfig, MockUpstream};

use crate::layout::{PRIMARY_REGION, SECONDARY_REGION};

/// `pairs` primary accounts `east{p}` and `pairs` secondary accounts `west{p}`.
pub struct Regions {
    rt: Option<tokio::runtime::Runtime>,
    /// Primaries, by pair.
    pub east: Vec<MockUpstream>,
    /// Secondaries, by pair.
    pub west: Vec<MockUpstream>,
    flaps: Vec<FlapHandle>,
}

impl Regions {
    /// Starts the mocks on a runtime with `threads` worker threads. Call outside any runtime.
    pub fn start(pairs: usize, threads: usize) -> anyhow::Result<Regions> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("mock-rt")
            .enable_all()
            .build()
            .context("mock runtime")?;
        let (east, west) = rt.block_on(async {
            let mut east = Vec::with_capacity(pairs);
            let mut west = Vec::with_capacity(pairs);
            for p in 0..pairs {
                east.push(
                    MockUpstream::start(MockConfig::new(format!("east{p}"), PRIMARY_REGION))
                        .await?,
                );
                west.push(
                    MockUpstream::start(MockConfig::new(format!("west{p}"), SECONDARY_REGION))
                        .await?,
                );
            }
            anyhow::Ok((east, west))
        })?;
        Ok(Regions {
            rt: Some(rt),
            east,
            west,
            flaps: Vec::new(),
        })
    }

    /// Base URLs of the primaries.
    pub fn east_urls(&self) -> Vec<String> {
        self.east.iter().map(MockUpstream::url).collect()
    }

    /// Base URLs of the secondaries.
    pub fn west_urls(&self) -> Vec<String> {
        self.west.iter().map(MockUpstream::url).collect()
    }

    fn handle(&self) -> anyhow::Result<&tokio::runtime::Handle> {
        Ok(self
            .rt
            .as_ref()
            .context("mock runtime is running")?
            .handle())
    }

    /// Kills the primaries of `pairs` (connects refused, open connections closed).
    pub async fn kill_primaries(&self, pairs: &[usize]) -> anyhow::Result<()> {
        let mocks: Vec<MockUpstream> = pairs.iter().map(|&p| self.east[p].clone()).collect();
        self.handle()?
            .spawn(async move {
                for m in mocks {
                    m.kill().await;
                }
            })
            .await
            .context("kill task")
    }

    /// Sets the behaviour of the primaries of `pairs`.
    pub fn set_primaries(&self, pairs: &[usize], behavior: Behavior) {
        for &p in pairs {
            self.east[p].set_behavior(behavior);
        }
    }

    /// Makes the primaries of `pairs` flap (down and up every `period`) until `self` drops.
    pub fn flap_primaries(&mut self, pairs: &[usize], period: Duration) -> anyhow::Result<()> {
        let handle = self.handle()?.clone();
        for &p in pairs {
            let m = self.east[p].clone();
            let _guard = handle.enter();
            self.flaps.push(m.flap(period));
        }
        Ok(())
    }

    /// CPU time of the mock runtime's threads so far.
    pub fn cpu(&self) -> Duration {
        crate::procfs::own_threads_cpu("mock-rt")
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        self.flaps.clear();
        self.east.clear();
        self.west.clear();
        if let Some(rt) = self.rt.take() {
            // Callable from inside another runtime too, unlike dropping it.
            rt.shutdown_background();
        }
    }
}

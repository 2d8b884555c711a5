//! Rise/fall hysteresis turning individual probe results into a [`Health`] verdict.

use crate::Health;

/// Per-account rise/fall counter.
///
/// `rise` consecutive successes make the verdict [`Health::Healthy`], `fall` consecutive failures
/// make it [`Health::Unhealthy`]; any opposite result resets the streak. It starts
/// [`Health::Unknown`]. A threshold of 0 is treated as 1.
///
/// Passive failures seen on live traffic are recorded as failures too; whether successes from live
/// traffic count is the caller's policy (pairgate only recovers through probes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCounter {
    rise: u32,
    fall: u32,
    health: Health,
    successes: u32,
    failures: u32,
}

impl HealthCounter {
    /// A counter in state [`Health::Unknown`].
    pub fn new(rise: u32, fall: u32) -> Self {
        HealthCounter {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one result; returns the new verdict if it changed.
    pub fn record(&mut self, success: bool) -> Option<Health> {
        let (streak, threshold, verdict) = if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes, self.rise, Health::Healthy)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures, self.fall, Health::Unhealthy)
        };
        if streak >= threshold && self.health != verdict {
            self.health = verdict;
            Some(verdict)
        } else {
            None
        }
    }

    /// Makes the verdict [`Health::Unhealthy`] at once, as if `fall` failures had just been
    /// recorded (outlier ejection); any success streak is lost, so `rise` successes are needed
    /// again. Returns the new verdict if it changed.
    pub fn eject(&mut self) -> Option<Health> {
        self.successes = 0;
        self.failures = self.failures.max(self.fall);
        (self.health != Health::Unhealthy).then(|| {
            self.health = Health::Unhealthy;
            Health::Unhealthy
        })
    }

    /// The current verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// True while the verdict is [`Health::Unknown`] or a streak toward the other verdict has
    /// started, so the prober can probe faster.
    pub fn in_transition(&self) -> bool {
        match self.health {
            Health::Unknown => true,
            Health::Healthy => self.failures > 0,
            Health::Unhealthy => self.successes > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn eject_makes_unhealthy_and_needs_rise_again() {
        // (verdict reached by these results first, eject's return)
        let rows: &[(&str, Option<Health>)] = &[
            ("", Some(Health::Unhealthy)),
            ("ss", Some(Health::Unhealthy)),
            ("ssf", Some(Health::Unhealthy)),
            ("fff", None),
            ("fffs", None),
        ];
        for &(results, want) in rows {
            let mut c = HealthCounter::new(2, 3);
            for r in results.chars() {
                c.record(r == 's');
            }
            assert_eq!(c.eject(), want, "{results}");
            assert_eq!(c.health(), Health::Unhealthy, "{results}");
            assert!(!c.in_transition(), "{results}");
            assert_eq!(c.record(true), None, "{results}: one success is not rise");
            assert_eq!(c.record(true), Some(Health::Healthy), "{results}");
        }
    }

    /// `results`: `s`/`f` per probe. `changes`: per probe `.` (none), `H` or `U`.
    /// `transition`: `in_transition()` after each probe, `y`/`n`.
    fn check(rise: u32, fall: u32, results: &str, changes: &str, transition: &str) {
        let mut c = HealthCounter::new(rise, fall);
        assert!(c.in_transition(), "a fresh counter is in transition");
        let rows = results.chars().zip(changes.chars()).zip(transition.chars());
        assert_eq!(results.len(), changes.len());
        assert_eq!(results.len(), transition.len());
        for (i, ((r, want), tr)) in rows.enumerate() {
            let got = match c.record(r == 's') {
                None => '.',
                Some(Health::Healthy) => 'H',
                Some(Health::Unhealthy) => 'U',
                Some(Health::Unknown) => '?',
            };
            let ctx = format!("rise={rise} fall={fall} {results} at {i}");
            assert_eq!(got, want, "{ctx}");
            assert_eq!(c.in_transition(), tr == 'y', "in_transition, {ctx}");
        }
    }

    #[test]
    fn table() {
        check(2, 3, "ss", ".H", "yn");
        check(2, 3, "fff", "..U", "yyn");
        check(2, 3, "sfsfss", ".....H", "yyyyyn");
        check(2, 3, "ssffsfff", ".H.....U", "ynyynyyn");
        check(2, 3, "ssfffss", ".H..U.H", "ynyynyn");
        check(1, 1, "sfsf", "HUHU", "nnnn");
        check(0, 0, "sf", "HU", "nn");
        check(3, 2, "sssssff", "..H...U", "yynnnyn");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A verdict changes exactly when the trailing run of equal results reaches its
        /// threshold and the verdict differs.
        #[test]
        fn matches_trailing_run_model(rise in 1u32..5, fall in 1u32..5,
                                      results in proptest::collection::vec(any::<bool>(), 0..64)) {
            let mut c = HealthCounter::new(rise, fall);
            let mut verdict = Health::Unknown;
            for (i, &r) in results.iter().enumerate() {
                let run = results[..=i].iter().rev().take_while(|&&x| x == r).count();
                let (threshold, target) = if r { (rise, Health::Healthy) } else { (fall, Health::Unhealthy) };
                let want = (run >= threshold as usize && verdict != target).then_some(target);
                if let Some(v) = want {
                    verdict = v;
                }
                prop_assert_eq!(c.record(r), want);
                prop_assert_eq!(c.health(), verdict);
            }
        }
    }
}

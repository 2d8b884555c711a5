//! Waiting for an upstream response head: bounded by the response-header timeout, and for a
//! replayable request by its account being declared unhealthy, listened for only once late.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// How the wait for a response head ended.
pub(crate) enum Head<T> {
    /// The request future finished (with a response or an error).
    Arrived(T),
    /// `response_header_timeout` passed first.
    TimedOut,
    /// The account was declared unhealthy while the request waited on it.
    AccountDown,
}

/// A head that has not arrived after this long is late: only then does the request start
/// listening for its account turning unhealthy. Black-hole detection takes seconds (probe
/// timeouts times `fall`), so listening this much later changes nothing a client can see.
pub(crate) const HEAD_LATE: Duration = Duration::from_millis(20);

/// Polls `request` until it finishes, `timeout` passes, or (with `turned_unhealthy`) the account
/// is declared unhealthy. One timer serves both deadlines: it first fires at `HEAD_LATE`, when
/// the health wait is registered, and is then moved to the full timeout. A head that arrives in
/// time (the common case) never touches the `Notify`'s waiter list. Bench:
/// `health_wait` in `benches/benches/micro.rs`.
pub(crate) async fn wait_for_head<F: Future>(
    request: F,
    timeout: Duration,
    turned_unhealthy: Option<tokio::sync::futures::Notified<'_>>,
) -> Head<F::Output> {
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    // Whether the timer is set to the full timeout (and the health wait, if any, is polled).
    let mut at_deadline = turned_unhealthy.is_none();
    let first = if at_deadline {
        deadline
    } else {
        deadline.min(start + HEAD_LATE)
    };
    let mut request = pin!(request);
    let mut timer = pin!(tokio::time::sleep_until(first));
    let mut turned_unhealthy = pin!(turned_unhealthy);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = request.as_mut().poll(cx) {
            return Poll::Ready(Head::Arrived(out));
        }
        loop {
            if at_deadline
                && let Some(notified) = turned_unhealthy.as_mut().as_pin_mut()
                && notified.poll(cx).is_ready()
            {
                return Poll::Ready(Head::AccountDown);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if at_deadline || tokio::time::Instant::now() >= deadline {
                return Poll::Ready(Head::TimedOut);
            }
            // Late: listen for the verdict from now on (polled at the top of the loop, which
            // registers this task), and wait out the rest of the timeout.
            at_deadline = true;
            timer.as_mut().reset(deadline);
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use pairgate_routing::{Health, HealthCell};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn check<T>(head: &Head<T>) -> &'static str {
        match head {
            Head::Arrived(_) => "arrived",
            Head::TimedOut => "timed out",
            Head::AccountDown => "account down",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_head_arrives() {
        let cell = HealthCell::default();
        let head = wait_for_head(async { 7 }, TIMEOUT, Some(cell.turned_unhealthy())).await;
        assert!(matches!(head, Head::Arrived(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_health_wait_only_the_timeout_ends_it() {
        let cell = HealthCell::default();
        let started = tokio::time::Instant::now();
        let wait = wait_for_head(pending::<()>(), TIMEOUT, None);
        cell.store(Health::Unhealthy);
        assert_eq!(check(&wait.await), "timed out");
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_head_without_a_verdict_times_out() {
        let cell = HealthCell::default();
        let started = tokio::time::Instant::now();
        let head = wait_for_head(pending::<()>(), TIMEOUT, Some(cell.turned_unhealthy())).await;
        assert_eq!(check(&head), "timed out");
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_verdict_before_the_head_is_late_is_seen_when_it_is() {
        let cell = HealthCell::default();
        let started = tokio::time::Instant::now();
        // Taken before the verdict, first polled after it: the verdict still counts.
        let turned = cell.turned_unhealthy();
        cell.store(Health::Unhealthy);
        let head = wait_for_head(pending::<()>(), TIMEOUT, Some(turned)).await;
        assert_eq!(check(&head), "account down");
        assert_eq!(started.elapsed(), HEAD_LATE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_verdict_while_late_ends_the_wait_at_once() {
        let cell = std::sync::Arc::new(HealthCell::default());
        let started = tokio::time::Instant::now();
        let verdict = std::sync::Arc::clone(&cell);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            verdict.store(Health::Unhealthy);
        });
        let head = wait_for_head(pending::<()>(), TIMEOUT, Some(cell.turned_unhealthy())).await;
        assert_eq!(check(&head), "account down");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_shorter_than_late_is_kept() {
        let cell = HealthCell::default();
        let started = tokio::time::Instant::now();
        let short = HEAD_LATE / 2;
        let head = wait_for_head(pending::<()>(), short, Some(cell.turned_unhealthy())).await;
        assert_eq!(check(&head), "timed out");
        assert_eq!(started.elapsed(), short);
    }
}

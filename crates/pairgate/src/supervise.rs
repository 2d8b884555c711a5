//! Supervision of the gateway's long-lived tasks: each is owned by name, and one that ends or
//! panics while the gateway serves is reported, so the process can exit non-zero.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::task::JoinHandle;

/// How a supervised task ended.
#[derive(Debug, thiserror::Error)]
pub enum TaskExit {
    /// It returned, which it must not do while the gateway serves.
    #[error("the {0} task ended unexpectedly")]
    Ended(&'static str),
    /// It panicked (or was cancelled).
    #[error("the {name} task failed")]
    Failed {
        /// The task's name.
        name: &'static str,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The long-lived tasks of a gateway, by name. None is restarted: each one (the controller,
/// which owns the failover state; the fleet member, which retries etcd by itself) ending is a
/// bug, and the process exits non-zero so a service manager restarts it whole. Dropping the
/// supervisor detaches the tasks (it does not abort them).
#[derive(Default)]
pub struct Supervisor {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Supervisor {
    /// Owns `task` under `name`.
    pub fn own(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// The names of the tasks still owned.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Waits until a task ends or panics, and stops owning it; pending forever when none is
    /// owned.
    pub async fn next_exit(&mut self) -> TaskExit {
        poll_fn(|cx| {
            for i in 0..self.tasks.len() {
                let (name, task) = &mut self.tasks[i];
                if let Poll::Ready(result) = Pin::new(task).poll(cx) {
                    let name = *name;
                    self.tasks.swap_remove(i);
                    return Poll::Ready(match result {
                        Ok(()) => TaskExit::Ended(name),
                        Err(source) => TaskExit::Failed { name, source },
                    });
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Longest any wait in these tests may take.
    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_task_that_ends_or_panics_is_reported_by_name() {
        let mut supervisor = Supervisor::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        supervisor.own(
            "forever",
            tokio::spawn(async {
                std::future::pending::<()>().await;
            }),
        );
        supervisor.own(
            "returns",
            tokio::spawn(async move {
                let _ = released.await;
            }),
        );
        supervisor.own(
            "panics",
            tokio::spawn(async {
                panic!("boom");
            }),
        );
        let first = tokio::time::timeout(BOUND, supervisor.next_exit())
            .await
            .expect("in time");
        match first {
            TaskExit::Failed { name, source } => {
                assert_eq!(name, "panics");
                assert!(source.is_panic());
            }
            other => panic!("expected the panic, got {other:?}"),
        }
        release.send(()).expect("task waiting");
        let second = tokio::time::timeout(BOUND, supervisor.next_exit())
            .await
            .expect("in time");
        assert!(matches!(second, TaskExit::Ended("returns")), "{second:?}");
        assert_eq!(second.to_string(), "the returns task ended unexpectedly");
        assert_eq!(supervisor.names(), ["forever"]);
        // The one left never ends: no exit is reported.
        let next = supervisor.next_exit();
        tokio::pin!(next);
        let polled = poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
    }
}

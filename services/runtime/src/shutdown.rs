//! One shutdown token for the process, fired by SIGINT or SIGTERM; services
//! watch it and drain.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The process's shutdown signal. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Shutdown(CancellationToken::new())
    }

    /// Fires on SIGINT or SIGTERM.
    pub fn on_signals() -> Self {
        let s = Shutdown::new();
        let fire = s.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        fire.trigger();
                        return;
                    }
                };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutdown signal received");
            fire.trigger();
        });
        s
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    /// A child that fires with this one but can also be fired alone.
    pub fn child(&self) -> Shutdown {
        Shutdown(self.0.child_token())
    }
}

/// Sleeps for `d` unless shutdown comes first; returns false on shutdown.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait() => false,
    }
}

/// Spawns a task of the service; if it fails or panics, the whole process
/// shuts down (the first failure stops the rest) and says why.
pub fn spawn_supervised<E>(
    name: &'static str,
    shutdown: &Shutdown,
    fut: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), E>>
where
    E: std::fmt::Display + Send + 'static,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(r) => {
                if let Err(e) = &r {
                    tracing::error!(task = name, error = %e, "task failed; shutting down");
                    shutdown.trigger();
                }
                r
            }
            Err(p) => {
                tracing::error!(task = name, panic = crate::consumer::panic_text(&*p), "task panicked; shutting down");
                shutdown.trigger();
                std::panic::resume_unwind(p)
            }
        }
    })
}

/// Waits for tasks to finish, at most `deadline` in all.
pub async fn drain<E: std::fmt::Display>(tasks: Vec<tokio::task::JoinHandle<Result<(), E>>>, deadline: Duration) {
    let all = futures::future::join_all(tasks);
    match tokio::time::timeout(deadline, all).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "task ended with an error"),
                    Err(e) => tracing::error!(error = %e, "task panicked"),
                }
            }
        }
        Err(_) => tracing::warn!(deadline_s = deadline.as_secs(), "tasks did not drain in time"),
    }
}

#[cfg(test)]
mod supervision {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_shuts_the_service_down() {
        let s = Shutdown::new();
        let task = spawn_supervised::<String>("boom", &s, async { panic!("boom") });
        assert!(task.await.unwrap_err().is_panic());
        assert!(s.is_triggered(), "a dead task would have gone unnoticed");
    }

    #[tokio::test]
    async fn a_task_that_fails_shuts_the_service_down_and_one_that_ends_does_not() {
        let s = Shutdown::new();
        spawn_supervised::<String>("fine", &s, async { Ok(()) }).await.unwrap().unwrap();
        assert!(!s.is_triggered());
        let r = spawn_supervised::<String>("fails", &s, async { Err("redis gone".to_owned()) }).await.unwrap();
        assert_eq!(r, Err("redis gone".to_owned()));
        assert!(s.is_triggered());
    }
}

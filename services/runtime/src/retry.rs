//! The one way to try again: a policy (first delay, doubling to a ceiling,
//! up to 25% jitter, an optional limit) and [`Retry::run`], which never sleeps
//! through a shutdown.

use std::future::Future;
use std::time::Duration;

use crate::Shutdown;
use crate::shutdown::sleep_or_shutdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The wait before the second try.
    pub initial: Duration,
    /// The longest wait (before jitter).
    pub max: Duration,
    /// Most tries in all; `None` tries until it works or the service stops.
    pub limit: Option<u32>,
}

/// Why [`Retry::run`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp<E> {
    /// The error said trying again cannot help, or the tries ran out.
    Failed { error: E, attempts: u32 },
    /// The service is stopping; the last error, if a try had failed.
    ShuttingDown(Option<E>),
}

impl Retry {
    /// The consumer loop's: 200 ms doubling to 5 s, until it works.
    pub const CONSUMER: Retry = Retry { initial: Duration::from_millis(200), max: Duration::from_secs(5), limit: None };

    pub fn new(initial: Duration, max: Duration) -> Self {
        Retry { initial, max, limit: None }
    }

    pub fn limited(self, tries: u32) -> Self {
        Retry { limit: Some(tries.max(1)), ..self }
    }

    /// The wait after the `attempt`-th failed try (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max);
        base + Duration::from_millis(rand::random_range(0..=base.as_millis() as u64 / 4))
    }

    /// Runs `op` until it succeeds, `is_final` says an error will not get
    /// better, the limit is reached, or shutdown fires during a wait. The
    /// first try is always made, also while stopping: work begun (a message
    /// of a batch, what follows a recorded answer) is finished if it can be
    /// at once. `on_retry` hears each failure that is tried again, with the
    /// attempt number and the wait.
    pub async fn run<T, E, Fut>(
        &self,
        shutdown: &Shutdown,
        mut op: impl FnMut(u32) -> Fut,
        is_final: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(u32, &E, Duration),
    ) -> Result<T, GaveUp<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if is_final(&error) || self.limit.is_some_and(|l| attempt >= l) {
                return Err(GaveUp::Failed { error, attempts: attempt });
            }
            let wait = self.delay(attempt);
            on_retry(attempt, &error, wait);
            if !sleep_or_shutdown(wait, shutdown).await {
                return Err(GaveUp::ShuttingDown(Some(error)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const QUICK: Retry = Retry { initial: Duration::from_millis(1), max: Duration::from_millis(4), limit: None };

    #[test]
    fn delays_double_to_the_ceiling_with_at_most_a_quarter_of_jitter() {
        let r = Retry::new(Duration::from_millis(200), Duration::from_secs(5));
        for (attempt, base) in [(1, 200), (2, 400), (3, 800), (6, 5000), (40, 5000)] {
            let d = r.delay(attempt).as_millis() as u64;
            assert!((base..=base + base / 4).contains(&d), "attempt {attempt}: {d} ms");
        }
    }

    #[tokio::test]
    async fn it_tries_until_it_works_and_reports_each_retry() {
        let tries = AtomicU32::new(0);
        let mut heard = Vec::new();
        let got = QUICK
            .run(
                &Shutdown::new(),
                |n| {
                    tries.fetch_add(1, Ordering::SeqCst);
                    async move { if n < 3 { Err(format!("down {n}")) } else { Ok(n) } }
                },
                |_| false,
                |n, e: &String, _| heard.push((n, e.clone())),
            )
            .await;
        assert_eq!(got, Ok(3));
        assert_eq!(heard, [(1, "down 1".to_owned()), (2, "down 2".to_owned())]);
    }

    #[tokio::test]
    async fn a_final_error_or_the_limit_stops_it() {
        let never = |_| async { Err::<(), _>("refused") };
        let r = QUICK.run(&Shutdown::new(), never, |e| *e == "refused", |_, _, _| {}).await;
        assert_eq!(r, Err(GaveUp::Failed { error: "refused", attempts: 1 }));
        let r = QUICK.limited(4).run(&Shutdown::new(), never, |_| false, |_, _, _| {}).await;
        assert_eq!(r, Err(GaveUp::Failed { error: "refused", attempts: 4 }));
    }

    #[tokio::test]
    async fn a_first_try_is_made_while_stopping_but_no_retry() {
        let stopping = Shutdown::new();
        stopping.trigger();
        let tries = AtomicU32::new(0);
        let ok = QUICK
            .run(
                &stopping,
                |_| async {
                    tries.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(7)
                },
                |_| false,
                |_, _, _| {},
            )
            .await;
        assert_eq!(ok, Ok(7));
        let failing = QUICK.run(&stopping, |_| async { Err::<(), _>("down") }, |_| false, |_, _, _| {}).await;
        assert_eq!(failing, Err(GaveUp::ShuttingDown(Some("down"))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_at_once() {
        let shutdown = Shutdown::new();
        let slow = Retry::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let fire = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fire.trigger();
        });
        let started = std::time::Instant::now();
        let r = slow.run(&shutdown, |_| async { Err::<(), _>("down") }, |_| false, |_, _, _| {}).await;
        assert_eq!(r, Err(GaveUp::ShuttingDown(Some("down"))));
        assert!(started.elapsed() < Duration::from_secs(60), "slept through the shutdown");
    }
}

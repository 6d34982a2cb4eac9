//! The firing engine: sleeps until the next due time (or until a timer is
//! armed locally), claims what is due in every shard, hands it to the sink,
//! and acknowledges once the sink says its effects are durable. Several
//! engines (instances) share the shards; claims are atomic, so each timer is
//! handed out once, and a claim whose engine died is handed out again after
//! `claim_ttl_ms`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use whistle_domain::Clock;
use whistle_runtime::Shutdown;

use crate::Result;
use crate::timers::{Conn, Due, TimerStore};

/// Where due timers go: the service publishes events; tests and the
/// benchmark record them.
pub trait Sink: Send + Sync + 'static {
    /// Returns once the timers' effects are durable; an error leaves them
    /// claimed, to be handed out again when the claim expires.
    fn fire(&self, due: Vec<Due>) -> impl Future<Output = Result<()>> + Send;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// How long a claimed timer may stay unacknowledged before another
    /// instance fires it (its instance died between claim and send).
    pub claim_ttl_ms: i64,
    /// Timers claimed per shard per round trip.
    pub claim_batch: usize,
    /// Longest sleep when nothing local is due: timers armed by other
    /// instances, and expired claims, are noticed within this.
    pub max_idle_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { claim_ttl_ms: 5_000, claim_batch: 512, max_idle_ms: 1_000 }
    }
}

/// Why the engine stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Shutdown,
    /// A shard's `alive` marker is gone: Redis lost its data.
    DataLost,
}

pub struct Engine<C, S> {
    store: TimerStore<C>,
    sink: Arc<S>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    settings: EngineSettings,
    metrics: TimerMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// What the engine does, as metrics: timers fired by kind, how late each
/// fired after it fell due, and how many are outstanding.
#[derive(Clone)]
pub struct TimerMetrics {
    fired: Family<KindLabels, Counter>,
    lateness: Histogram,
    pub outstanding: Gauge,
}

impl Default for TimerMetrics {
    fn default() -> Self {
        // 1 ms to about 65 s.
        TimerMetrics {
            fired: Family::default(),
            lateness: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            outstanding: Gauge::default(),
        }
    }
}

impl TimerMetrics {
    pub fn registered(ops: &whistle_runtime::Ops) -> TimerMetrics {
        let m = TimerMetrics::default();
        ops.register("whistle_timers_fired", "Timers fired, by kind (warning, overdue, second overdue, ...)", m.fired.clone());
        ops.register("whistle_timer_lateness_seconds", "How long after it fell due a timer fired", m.lateness.clone());
        ops.register("whistle_timers_outstanding", "Timers armed and not yet fired, over every shard", m.outstanding.clone());
        m
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub fired: usize,
    /// Some shard had more due than one claim takes.
    pub more: bool,
}

fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl<C: Conn, S: Sink> Engine<C, S> {
    pub fn new(store: TimerStore<C>, sink: Arc<S>, clock: Arc<dyn Clock>, wake: Arc<Notify>, settings: EngineSettings) -> Self {
        Engine { store, sink, clock, wake, settings, metrics: TimerMetrics::default() }
    }

    /// The same engine, counting what it fires in `metrics`.
    pub fn with_metrics(self, metrics: TimerMetrics) -> Self {
        Engine { metrics, ..self }
    }

    /// Claims and fires everything due now in every shard, once.
    pub async fn round(&self) -> Result<Round> {
        let now = millis(self.clock.now());
        let shards = (0..self.store.shards()).map(|s| async move {
            let due = self.store.claim(s, now, self.settings.claim_ttl_ms, self.settings.claim_batch).await?;
            let n = due.len();
            if n == 0 {
                return Ok::<_, crate::Error>((0, false));
            }
            let acked = due.clone();
            self.sink.fire(due).await?;
            self.store.ack(s, &acked).await?;
            for d in &acked {
                self.metrics.fired.get_or_create(&KindLabels { kind: d.kind.as_str() }).inc();
                self.metrics.lateness.observe((now - d.due_ms).max(0) as f64 / 1000.0);
            }
            Ok((n, n >= self.settings.claim_batch))
        });
        let mut round = Round { fired: 0, more: false };
        for r in futures::future::join_all(shards).await {
            let (n, more) = r?;
            round.fired += n;
            round.more |= more;
        }
        Ok(round)
    }

    /// The earliest due time over all shards, and whether every shard still
    /// has its data.
    async fn next(&self) -> Result<(Option<i64>, bool)> {
        let all = futures::future::join_all((0..self.store.shards()).map(|s| self.store.next_due(s))).await;
        let mut next: Option<i64> = None;
        let mut alive = true;
        for r in all {
            let (n, a) = r?;
            alive &= a;
            next = match (next, n) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
        Ok((next, alive))
    }

    pub async fn run(&self, shutdown: &Shutdown) -> Result<Stopped> {
        while !shutdown.is_triggered() {
            let wait = match self.round().await {
                Ok(r) if r.more => continue,
                Ok(_) => match self.next().await {
                    Ok((_, false)) => return Ok(Stopped::DataLost),
                    Ok((Some(next), true)) => {
                        let now = millis(self.clock.now());
                        Duration::from_millis((next - now).clamp(0, self.settings.max_idle_ms as i64) as u64)
                    }
                    Ok((None, true)) => Duration::from_millis(self.settings.max_idle_ms),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the next due time");
                        Duration::from_millis(200)
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "firing round failed; the claims will be retried");
                    Duration::from_millis(200)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.wait() => {}
            }
        }
        Ok(Stopped::Shutdown)
    }
}

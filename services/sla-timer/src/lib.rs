//! SLA timer: keeps, for every ticket in a unit's hands, the timers of its
//! current deadline in Redis and publishes `overdue` when one falls due:
//! level 1 at the deadline (reminder to the unit), level 2 one span later
//! (urging letter). A new deadline (re-dispatch, extension, rework) replaces
//! the old timers; completion, return, whistle or closing cancels them.
//!
//! Each timer fires once per deadline version: its event id is derived from
//! the timer's identity, a fired timer cannot be armed again, and a timer
//! claimed by an instance that died is claimed again when its claim expires.

pub mod timers;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;
use whistle_domain::event::ExtensionDecision;
use whistle_domain::{
    Actor, Clock, Deadline, Event, EventKind, OverdueLevel, SystemClock, TicketId, TimerKey,
    TimerKind, UnitCode,
};
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, Topics};

pub use timers::{TimerData, TimerStore};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub sla_timer: TimerSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TimerSettings {
    pub group: String,
    /// How long a claimed timer may stay unacknowledged before another
    /// instance fires it (an instance died between claim and send).
    pub claim_ttl_ms: i64,
    /// Timers claimed per round trip.
    pub claim_batch: usize,
    /// Longest sleep when nothing local is due (timers armed by other
    /// instances are noticed within this).
    pub max_idle_ms: u64,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings {
            group: "sla-timer".into(),
            claim_ttl_ms: 5_000,
            claim_batch: 256,
            max_idle_ms: 1_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("timer data: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for HandleError {
    fn from(e: Error) -> Self {
        HandleError::Retry(e.to_string())
    }
}

pub struct SlaTimer {
    config: Config,
    store: TimerStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl SlaTimer {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        if config.kafka.create_topics {
            whistle_runtime::topics::ensure(&config.kafka).await?;
        }
        let producer = EventProducer::new(&config.kafka)?;
        let redis = whistle_runtime::redis_client::connect(&config.redis).await?;
        let store = TimerStore::new(redis, &config.redis.key_prefix);
        Ok(SlaTimer {
            config,
            store,
            producer,
            clock,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn store(&self) -> &TimerStore {
        &self.store
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let SlaTimer {
            config,
            store,
            producer,
            clock,
            wake,
        } = self;
        let topics = Topics::new(&config.kafka);
        let arming = Arc::new(Arming {
            store: store.clone(),
            wake: wake.clone(),
        });
        let consumer = spawn_supervised(
            "arming",
            &shutdown,
            consumer::run(
                config.kafka.clone(),
                ConsumerSettings::new(
                    "sla-timer",
                    config.sla_timer.group.clone(),
                    vec![topics.events()],
                ),
                arming,
                producer.clone(),
                shutdown.clone(),
            ),
        );
        let firing = Firing {
            store,
            producer: producer.clone(),
            clock,
            wake,
            settings: config.sla_timer.clone(),
        };
        let fire = spawn_supervised("firing", &shutdown, firing.run(shutdown.clone()));
        shutdown.wait().await;
        drain(vec![consumer], Duration::from_secs(15)).await;
        drain(vec![fire], Duration::from_secs(15)).await;
        producer.flush(Duration::from_secs(5));
        Ok(())
    }
}

/// Consumes ticket events and keeps the timers in step with the deadlines.
struct Arming {
    store: TimerStore,
    wake: Arc<Notify>,
}

impl Arming {
    async fn arm_deadline(
        &self,
        ticket: TicketId,
        deadline: &Deadline,
        unit: &UnitCode,
    ) -> Result<()> {
        self.store.supersede(&ticket, &deadline.version).await?;
        let deadline_ms = (deadline.due_at.unix_timestamp_nanos() / 1_000_000) as i64;
        let span_ms = deadline.span.whole_milliseconds() as i64;
        let data = TimerData {
            unit: unit.clone(),
            deadline_ms,
            traceparent: whistle_runtime::telemetry::current_traceparent(),
        };
        for (kind, due_ms) in [
            (TimerKind::FirstOverdue, deadline_ms),
            (TimerKind::SecondOverdue, deadline_ms + span_ms.max(0)),
        ] {
            let key = TimerKey {
                ticket,
                deadline_version: deadline.version,
                kind,
            };
            if self.store.arm(&key, due_ms, &data).await? {
                tracing::debug!(ticket = %ticket, timer = kind.as_str(), due_ms, "timer armed");
            }
        }
        self.store.remember_unit(&ticket, unit).await?;
        self.wake.notify_one();
        Ok(())
    }
}

impl Handler for Arming {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let ticket = event.ticket_id;
        match &event.kind {
            EventKind::Dispatched { deadline, unit, .. } => {
                self.arm_deadline(ticket, deadline, unit).await?
            }
            EventKind::Reopened { deadline, .. }
            | EventKind::ExtensionDecided(ExtensionDecision::Granted { deadline, .. }) => {
                match self.store.unit_of(&ticket).await? {
                    Some(unit) => self.arm_deadline(ticket, deadline, &unit).await?,
                    None => {
                        return Err(HandleError::Poison(format!(
                            "no assignment known for ticket {ticket}; cannot arm the new deadline"
                        )));
                    }
                }
            }
            EventKind::Completed { .. }
            | EventKind::Returned { .. }
            | EventKind::Whistled { .. } => {
                let n = self.store.cancel_ticket(&ticket).await?;
                tracing::debug!(ticket = %ticket, cancelled = n, "timers cancelled");
            }
            EventKind::Closed { .. } => {
                self.store.cancel_ticket(&ticket).await?;
                self.store.forget_unit(&ticket).await?;
            }
            EventKind::Received { .. }
            | EventKind::Classified { .. }
            | EventKind::Answered { .. }
            | EventKind::Delegated { .. }
            | EventKind::Acknowledged
            | EventKind::ReportedIn { .. }
            | EventKind::ExtensionRequested { .. }
            | EventKind::ExtensionDecided(ExtensionDecision::Refused { .. })
            | EventKind::DeadlineWarning { .. }
            | EventKind::Overdue { .. }
            | EventKind::Supervised { .. }
            | EventKind::RevisitRecorded { .. } => {}
        }
        Ok(())
    }
}

/// Fires due timers: wakes at the next due time (or when a timer is armed),
/// claims, publishes, acknowledges.
struct Firing {
    store: TimerStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    settings: TimerSettings,
}

fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Firing {
    async fn run(self, shutdown: Shutdown) -> Result<()> {
        while !shutdown.is_triggered() {
            let now = millis(self.clock.now());
            let wait = match self.round(now).await {
                Ok(true) => continue,
                Ok(false) => match self.store.next_due().await {
                    Ok(Some(next)) => Duration::from_millis(
                        (next - now).clamp(1, self.settings.max_idle_ms as i64) as u64,
                    ),
                    Ok(None) => Duration::from_millis(self.settings.max_idle_ms),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the next due time");
                        Duration::from_millis(500)
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "firing round failed; retrying");
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.wait() => {}
            }
        }
        Ok(())
    }

    /// One claim round; true if the batch was full (more may be due).
    async fn round(&self, now: i64) -> Result<bool> {
        let claimed = self
            .store
            .claim(now, self.settings.claim_ttl_ms, self.settings.claim_batch)
            .await?;
        let full = claimed.len() >= self.settings.claim_batch;
        for r in futures::future::join_all(claimed.into_iter().map(|c| self.fire(c))).await {
            r?;
        }
        Ok(full)
    }

    async fn fire(&self, c: timers::Claimed) -> Result<()> {
        let due_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(c.data.deadline_ms) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let kind = match c.key.kind {
            TimerKind::Warning => EventKind::DeadlineWarning {
                deadline_version: c.key.deadline_version,
            },
            TimerKind::FirstOverdue => EventKind::Overdue {
                level: OverdueLevel::First,
                deadline_version: c.key.deadline_version,
                due_at,
                unit: c.data.unit.clone(),
            },
            TimerKind::SecondOverdue => EventKind::Overdue {
                level: OverdueLevel::Second,
                deadline_version: c.key.deadline_version,
                due_at,
                unit: c.data.unit.clone(),
            },
        };
        let event = Event {
            id: c.key.fired_event_id(),
            ticket_id: c.key.ticket,
            occurred_at: self.clock.now(),
            actor: Actor::system("sla-timer"),
            kind,
        };
        let span = tracing::info_span!("fire", ticket = %c.key.ticket, timer = c.key.kind.as_str());
        whistle_runtime::telemetry::set_parent(&span, c.data.traceparent.as_deref());
        self.producer.publish(&event).instrument(span).await?;
        self.store.ack(&c.key).await?;
        let late_ms = millis(self.clock.now()) - c.due_ms;
        tracing::info!(ticket = %c.key.ticket, timer = c.key.kind.as_str(), unit = %c.data.unit, late_ms, "timer fired");
        Ok(())
    }
}

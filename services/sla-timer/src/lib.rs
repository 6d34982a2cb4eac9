//! SLA timer: for every ticket in a unit's hands, the three timers of its
//! current deadline — the warning for desks, the first overdue (reminder to
//! the unit) and the second overdue (urging letter, leader in charge,
//! supervised) — kept in Redis and fired once each, at the instant the
//! deadline policy and working-day calendar gave (the dispatcher computes the
//! instants; this service keeps them).
//!
//! A new deadline (re-dispatch, extension, rework) replaces the old timers;
//! completion, return or whistle cancels them; closing forgets the ticket.
//! If Redis loses its data, every open timer is rebuilt from Kafka.

pub mod engine;
pub mod rebuild;
pub mod timers;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;
use whistle_domain::event::ExtensionDecision;
use whistle_domain::{Actor, Clock, Deadline, Event, EventKind, OverdueLevel, SystemClock, TicketId, TimerKey, TimerKind, UnitCode};
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::ops::{Ops, OpsServer};
use whistle_runtime::redis_client::RedisConn;
use whistle_runtime::shutdown::drain;
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

pub use engine::{Engine, EngineSettings, Sink, Stopped, TimerMetrics};
pub use rebuild::{Report, rebuild};
pub use timers::{Arm, Due, Record, TimerStore};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub sla_timer: TimerSettings,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["sla_timer"];

    fn check(&self) -> whistle_runtime::Result<()> {
        use whistle_runtime::config::in_range;
        let t = &self.sla_timer;
        in_range("sla_timer.shards", t.shards, 1..)?;
        in_range("sla_timer.claim_ttl_ms", t.claim_ttl_ms, 1..)?;
        in_range("sla_timer.claim_batch", t.claim_batch, 1..)?;
        in_range("sla_timer.max_idle_ms", t.max_idle_ms, 1..)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TimerSettings {
    pub group: String,
    /// Tickets are spread over this many shards (hash slots on a cluster).
    /// Every instance of a deployment must use the same number.
    pub shards: u16,
    /// How long a claimed timer may stay unacknowledged before another
    /// instance fires it (its instance died between claim and send).
    pub claim_ttl_ms: i64,
    /// Timers claimed per shard per round trip.
    pub claim_batch: usize,
    /// Longest sleep when nothing local is due: timers armed by other
    /// instances, and expired claims, are noticed within this.
    pub max_idle_ms: u64,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub ops_listen: std::net::SocketAddr,
}

impl TimerSettings {
    pub fn engine(&self) -> EngineSettings {
        EngineSettings { claim_ttl_ms: self.claim_ttl_ms, claim_batch: self.claim_batch, max_idle_ms: self.max_idle_ms }
    }
}

impl Default for TimerSettings {
    fn default() -> Self {
        let e = EngineSettings::default();
        TimerSettings {
            group: "sla-timer".into(),
            shards: 8,
            claim_ttl_ms: e.claim_ttl_ms,
            claim_batch: e.claim_batch,
            max_idle_ms: e.max_idle_ms,
            ops_listen: ([127, 0, 0, 1], 9184).into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for HandleError {
    /// The runtime's errors say themselves whether waiting helps.
    fn from(e: Error) -> Self {
        match e {
            Error::Runtime(e) => e.into(),
            Error::Redis(e) => whistle_runtime::Error::Redis(e).into(),
        }
    }
}

pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn kind_index(k: TimerKind) -> usize {
    match k {
        TimerKind::Warning => 0,
        TimerKind::FirstOverdue => 1,
        TimerKind::SecondOverdue => 2,
    }
}

/// The timers a deadline has.
pub fn timers_for(d: &Deadline) -> Vec<Arm> {
    let mut v = Vec::with_capacity(3);
    if let Some(w) = d.warn_at {
        v.push(Arm { kind: TimerKind::Warning, due_ms: millis(w) });
    }
    v.push(Arm { kind: TimerKind::FirstOverdue, due_ms: millis(d.due_at) });
    v.push(Arm { kind: TimerKind::SecondOverdue, due_ms: millis(d.second_due_at) });
    v
}

/// What an event does to a ticket's timers: the one place that maps the
/// lifecycle onto timers, for the live consumer and for the rebuild alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    /// A new deadline version: arm its timers. `unit` is `None` when the
    /// event does not name it (extension, rework: the same unit keeps it).
    Arm {
        deadline: &'a Deadline,
        unit: Option<&'a UnitCode>,
    },
    /// The timer of this kind and version fired.
    Fired {
        kind: TimerKind,
        version: whistle_domain::EventId,
    },
    /// Out of the unit's hands: no timers.
    Cancel,
    /// Closed: forget the ticket.
    Forget,
    None,
}

pub fn effect(kind: &EventKind) -> Effect<'_> {
    match kind {
        EventKind::Dispatched { deadline, unit, .. } => Effect::Arm { deadline, unit: Some(unit) },
        EventKind::Reopened { deadline, .. } | EventKind::ExtensionDecided(ExtensionDecision::Granted { deadline, .. }) => {
            Effect::Arm { deadline, unit: None }
        }
        EventKind::DeadlineWarning { deadline_version } => Effect::Fired { kind: TimerKind::Warning, version: *deadline_version },
        EventKind::Overdue { level, deadline_version, .. } => Effect::Fired {
            kind: match level {
                OverdueLevel::First => TimerKind::FirstOverdue,
                OverdueLevel::Second => TimerKind::SecondOverdue,
            },
            version: *deadline_version,
        },
        EventKind::Completed { .. } | EventKind::Returned { .. } | EventKind::Whistled { .. } => Effect::Cancel,
        EventKind::Closed { .. } => Effect::Forget,
        EventKind::Received { .. }
        | EventKind::Classified { .. }
        | EventKind::Reclassified { .. }
        | EventKind::Answered { .. }
        | EventKind::Delegated { .. }
        | EventKind::Acknowledged
        | EventKind::ReportedIn { .. }
        | EventKind::ExtensionRequested { .. }
        | EventKind::ExtensionDecided(ExtensionDecision::Refused { .. })
        | EventKind::Supervised { .. }
        | EventKind::RevisitRecorded { .. } => Effect::None,
    }
}

/// The event a due timer produces. Its id derives from the timer's identity
/// (ticket, deadline version, kind), so a timer handed out twice after a crash
/// produces the same event and consumers drop the copy.
pub fn event_for(d: &Due, now: time::OffsetDateTime) -> Event {
    let key = TimerKey { ticket: d.ticket, deadline_version: d.record.version, kind: d.kind };
    let due_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.record.deadline_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let overdue = |level| EventKind::Overdue { level, deadline_version: d.record.version, due_at, unit: d.record.unit.clone() };
    let kind = match d.kind {
        TimerKind::Warning => EventKind::DeadlineWarning { deadline_version: d.record.version },
        TimerKind::FirstOverdue => overdue(OverdueLevel::First),
        TimerKind::SecondOverdue => overdue(OverdueLevel::Second),
    };
    Event { id: key.fired_event_id(), ticket_id: d.ticket, occurred_at: now, actor: Actor::system("sla-timer"), kind }
}

/// The service's sink: publishes each timer's event to Kafka.
pub struct KafkaSink {
    producer: EventProducer,
    clock: Arc<dyn Clock>,
}

impl KafkaSink {
    pub fn new(producer: EventProducer, clock: Arc<dyn Clock>) -> Self {
        KafkaSink { producer, clock }
    }
}

impl Sink for KafkaSink {
    async fn fire(&self, due: Vec<Due>) -> Result<()> {
        let now = self.clock.now();
        let sends = due.iter().map(|d| {
            let event = event_for(d, now);
            let span = tracing::info_span!("fire", ticket = %d.ticket, timer = d.kind.as_str());
            whistle_runtime::telemetry::set_parent(&span, d.record.traceparent.as_deref());
            let producer = self.producer.clone();
            async move {
                producer.publish(&event).await?;
                tracing::info!(ticket = %d.ticket, timer = d.kind.as_str(), unit = %d.record.unit, late_ms = millis(now) - d.due_ms, "timer fired");
                Ok::<_, Error>(())
            }
            .instrument(span)
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }
}

pub struct SlaTimer {
    config: Config,
    store: TimerStore<RedisConn>,
    /// The ticket projection, to skip what the lifecycle refused.
    tickets: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    ops: Ops,
    /// The ops port until `run` serves it.
    ops_http: Option<OpsServer>,
}

impl SlaTimer {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let conn = RedisConn::connect(&config.redis).await?;
        let ops_http = OpsServer::for_service("sla-timer", config.sla_timer.ops_listen, conn.clone(), &producer).await?;
        let ops = ops_http.ops().clone();
        let store = TimerStore::new(conn, &config.redis.key_prefix, config.sla_timer.shards);
        let tickets = TicketStore::connect(&config.redis).await?;
        Ok(SlaTimer { config, store, tickets, producer, clock, ops, ops_http: Some(ops_http) })
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> std::net::SocketAddr {
        self.ops_http.as_ref().map_or(self.config.sla_timer.ops_listen, OpsServer::local_addr)
    }

    pub fn store(&self) -> &TimerStore<RedisConn> {
        &self.store
    }

    async fn lost_data(&self) -> Result<bool> {
        for s in 0..self.store.shards() {
            if !self.store.next_due(s).await?.1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rebuilds every open timer from Kafka and marks the shards alive.
    pub async fn rebuild(&self) -> Result<Report> {
        let started = std::time::Instant::now();
        let report = rebuild(&self.config.kafka, &self.store).await?;
        self.store.mark_alive().await?;
        tracing::info!(
            events = report.events,
            tickets = report.tickets,
            open = report.open,
            timers = report.timers,
            ms = started.elapsed().as_millis() as u64,
            "timers rebuilt from kafka"
        );
        Ok(report)
    }

    /// The end of every partition of the events topic, now.
    async fn ends(&self) -> Result<Vec<(i32, i64)>> {
        let kafka = self.config.kafka.clone();
        let topic = Topics::new(&kafka).events();
        Ok(tokio::task::spawn_blocking(move || whistle_runtime::kafka::ends(&kafka, &topic))
            .await
            .map_err(|e| whistle_runtime::Error::task("reading the topic's ends", e))??)
    }

    /// Waits until this service's group has handled everything before
    /// `ends` (or the service stops), saying so every 30 s.
    async fn catch_up(&self, ends: &[(i32, i64)], shutdown: &Shutdown) {
        let started = std::time::Instant::now();
        let mut told = started;
        loop {
            let (kafka, group, ends) = (self.config.kafka.clone(), self.config.sla_timer.group.clone(), ends.to_vec());
            let topic = Topics::new(&kafka).events();
            let reached = tokio::task::spawn_blocking(move || whistle_runtime::kafka::group_reached(&kafka, &group, &topic, &ends))
                .await
                .map_err(|e| whistle_runtime::Error::task("reading how far the timers are", e))
                .and_then(|r| r);
            match reached {
                Ok(true) => {
                    tracing::info!(ms = started.elapsed().as_millis() as u64, "timers in step with the events topic; firing");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read how far the timers are; will look again"),
            }
            if told.elapsed() >= Duration::from_secs(30) {
                tracing::warn!(
                    waited_s = started.elapsed().as_secs(),
                    "not firing yet: the timers are still catching up with the events topic"
                );
                told = std::time::Instant::now();
            }
            if !whistle_runtime::shutdown::sleep_or_shutdown(Duration::from_millis(100), shutdown).await {
                return;
            }
        }
    }

    /// Consumes ticket events and fires timers until shutdown. On start, and
    /// whenever Redis turns out to have lost its data, first rebuilds from
    /// Kafka.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<()> {
        let ops = self.ops_http.take().map(|o| o.spawn(&shutdown));
        let topics = Topics::new(&self.config.kafka);
        let wake = Arc::new(Notify::new());
        let sink = Arc::new(KafkaSink::new(self.producer.clone(), self.clock.clone()));
        let metrics = TimerMetrics::registered(&self.ops);
        let engine = Arc::new(
            Engine::new(self.store.clone(), sink, self.clock.clone(), wake.clone(), self.config.sla_timer.engine())
                .with_metrics(metrics.clone()),
        );
        // How many timers are outstanding, looked at every few seconds.
        let counting = {
            let (store, gauge) = (self.store.clone(), metrics.outstanding.clone());
            whistle_runtime::shutdown::spawn_supervised("timers-count", &shutdown, {
                let shutdown = shutdown.clone();
                async move {
                    loop {
                        match store.outstanding().await {
                            Ok(n) => {
                                gauge.set(n as i64);
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot count the outstanding timers"),
                        }
                        if !whistle_runtime::shutdown::sleep_or_shutdown(Duration::from_secs(2), &shutdown).await {
                            return Ok::<_, whistle_runtime::Error>(());
                        }
                    }
                }
            })
        };
        while !shutdown.is_triggered() {
            if self.lost_data().await? {
                self.rebuild().await?;
            }
            let epoch = shutdown.child();
            // What the topic holds now: no timer fires before the timers are
            // in step with all of it (an extension granted, a completion
            // recorded while this service was down supersedes a timer that
            // is due by now).
            let ends = self.ends().await?;
            let arming = Arc::new(Arming { store: self.store.clone(), tickets: self.tickets.clone(), wake: wake.clone() });
            let consumer = consumer::spawn(
                "arming",
                &self.config.kafka,
                ConsumerSettings::new(&self.ops, self.config.sla_timer.group.clone(), vec![topics.events()]),
                arming,
                self.producer.clone(),
                &epoch,
            );
            self.catch_up(&ends, &epoch).await;
            let stopped = {
                let engine = engine.clone();
                let epoch = epoch.clone();
                tokio::spawn(async move { engine.run(&epoch).await })
            };
            let outcome = stopped.await.map_err(|e| whistle_runtime::Error::task("firing", e))?;
            epoch.trigger();
            drain(vec![consumer], Duration::from_secs(15)).await;
            match outcome? {
                Stopped::Shutdown => break,
                Stopped::DataLost => {
                    tracing::warn!("redis lost the timers or restarted (it may lack the last writes); rebuilding from kafka")
                }
            }
        }
        shutdown.trigger();
        drain(ops.into_iter().chain([counting]).collect(), Duration::from_secs(5)).await;
        self.producer.flush(Duration::from_secs(5));
        Ok(())
    }
}

/// Consumes ticket events and keeps the timers in step with the deadlines.
struct Arming {
    store: TimerStore<RedisConn>,
    tickets: TicketStore,
    wake: Arc<Notify>,
}

impl Arming {
    async fn arm(&self, ticket: TicketId, deadline: &Deadline, unit: UnitCode) -> Result<()> {
        let record = Record {
            version: deadline.version,
            unit,
            deadline_ms: millis(deadline.due_at),
            traceparent: whistle_runtime::telemetry::current_traceparent(),
        };
        let n = self.store.arm(&ticket, &record, &timers_for(deadline), [false; 3]).await?;
        tracing::debug!(ticket = %ticket, armed = n, "timers armed");
        self.wake.notify_waiters();
        Ok(())
    }
}

impl Handler for Arming {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let ticket = event.ticket_id;
        let effect = effect(&event.kind);
        // An event the lifecycle refused (a stale unit's completion, a
        // district dispatching what it does not hold) moves no timer.
        if !matches!(effect, Effect::Fired { .. } | Effect::None) && self.tickets.accepted_at(&event, msg.offset).await?.is_none() {
            return Ok(());
        }
        match effect {
            Effect::Arm { deadline, unit: Some(unit) } => self.arm(ticket, deadline, unit.clone()).await?,
            Effect::Arm { deadline, unit: None } => match self.store.record_unit(&ticket).await? {
                Some(unit) => self.arm(ticket, deadline, unit).await?,
                None => return Err(HandleError::Poison(format!("no assignment known for ticket {ticket}; cannot arm its new deadline"))),
            },
            Effect::Cancel => {
                let n = self.store.cancel(&ticket, false).await?;
                tracing::debug!(ticket = %ticket, cancelled = n, "timers cancelled");
            }
            Effect::Forget => {
                self.store.cancel(&ticket, true).await?;
            }
            Effect::Fired { .. } | Effect::None => {}
        }
        Ok(())
    }
}

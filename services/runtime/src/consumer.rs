//! The consumer loop every service runs: manual offset commits only after the
//! handler's work is durable, in partition order; messages of one key handled
//! in order while different keys run concurrently; poison messages to the
//! dead-letter topic with the reason (never stalling the partition);
//! transient failures retried with backoff; offsets committed when partitions
//! are revoked and on drain.

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;
use whistle_domain::Event;

use crate::kafka::client_config;
use crate::ops::{DeadLetterReason, Ops};
use crate::retry::{GaveUp, Retry};
use crate::shutdown::sleep_or_shutdown;
use crate::{Error, EventProducer, KafkaConfig, Result, Shutdown, telemetry};

/// One consumed message, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Incoming {
    fn from_message(m: &BorrowedMessage<'_>) -> Self {
        let headers = m.headers().map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect()).unwrap_or_default();
        Incoming {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref()).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The ticket event this message carries; a message that is not one is
    /// poison.
    pub fn event(&self) -> Result<Event, HandleError> {
        let payload = self.payload.as_deref().ok_or_else(|| HandleError::Poison("message has no payload".into()))?;
        whistle_proto::decode_event(payload).map_err(|e| HandleError::Poison(e.to_string()))
    }
}

/// What a handler says about a message it could not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// Can never be processed: goes to the dead-letter topic with the reason.
    Poison(String),
    /// Infrastructure trouble (Redis, broker, a gateway): retried with backoff.
    Retry(String),
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleError::Poison(r) => write!(f, "poison: {r}"),
            HandleError::Retry(r) => write!(f, "retry: {r}"),
        }
    }
}

impl From<Error> for HandleError {
    /// Retried when the error says waiting may help, dead-lettered otherwise.
    fn from(e: Error) -> Self {
        if e.is_transient() { HandleError::Retry(e.to_string()) } else { HandleError::Poison(e.to_string()) }
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Does the work for one message and returns once it is durable. Must be
    /// idempotent: a message may be delivered again after a crash.
    fn handle(&self, msg: &Incoming) -> impl Future<Output = Result<(), HandleError>> + Send;
}

#[derive(Clone)]
pub struct ConsumerSettings {
    /// Group id, without the configured group prefix.
    pub group: String,
    pub topics: Vec<String>,
    /// Service name, for logs and dead-letter headers.
    pub service: &'static str,
    /// Where its lag, handling times and dead letters are counted.
    pub ops: Ops,
    /// Most messages handled at once (different keys run concurrently).
    pub max_batch: usize,
    pub commit_interval: Duration,
}

impl ConsumerSettings {
    /// A consumer of the service `ops` observes (and names).
    pub fn new(ops: &Ops, group: impl Into<String>, topics: Vec<String>) -> Self {
        ConsumerSettings {
            group: group.into(),
            topics,
            service: ops.service(),
            ops: ops.clone(),
            max_batch: 256,
            commit_interval: Duration::from_millis(1000),
        }
    }
}

type Pending = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// Commits what has been handled when partitions are taken away, so the next
/// owner starts right after it; reports the group's membership and lag.
struct CommitOnRevoke {
    pending: Pending,
    group: String,
    ops: Ops,
    /// When librdkafka's statistics last reported the lag.
    reported: Arc<Mutex<Instant>>,
}

impl ClientContext for CommitOnRevoke {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.ops.client_error("kafka-consumer", &error);
        tracing::error!(group = %self.group, %error, reason, "kafka client error");
    }

    /// The lag as librdkafka sees it (no broker round trip). Statistics come
    /// only while the loop polls: a stuck handler stops them, and then
    /// [`watch_lag`] asks the broker instead.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            // Partition -1 is librdkafka's internal "unassigned" queue.
            for (partition, p) in t.partitions.iter().filter(|(id, p)| **id >= 0 && p.desired) {
                // Nothing committed yet: everything on it is still to do.
                let lag = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.hi_offset >= 0 && p.lo_offset >= 0 {
                    p.hi_offset - p.lo_offset
                } else {
                    continue;
                };
                self.ops.lag(&self.group, topic, *partition, Some(lag));
            }
        }
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

type Subscribed = StreamConsumer<CommitOnRevoke>;

/// The lag of each partition the consumer holds: its committed offset (the
/// start when nothing is committed yet) against the high watermark. Broker
/// round trips: call it off the async threads.
fn lag_of(c: &Subscribed) -> rdkafka::error::KafkaResult<Vec<(String, i32, i64)>> {
    let assigned = c.assignment()?;
    if assigned.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = c.committed_offsets(assigned, Duration::from_secs(5))?;
    let mut lags = Vec::new();
    for el in committed.elements() {
        let (low, high) = c.fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(5))?;
        let from = match el.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lags.push((el.topic().to_owned(), el.partition(), (high - from).max(0)));
    }
    Ok(lags)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Beside the consumer loop: when librdkafka's statistics have not come for
/// two intervals (the loop is stuck in a handler), measures the lag by
/// asking the broker, so a stuck consumer still shows its lag growing.
async fn watch_lag(consumer: Arc<Subscribed>, ops: Ops, group: String, every: Duration, shutdown: Shutdown) {
    let reported = consumer.context().reported.clone();
    while sleep_or_shutdown(every, &shutdown).await {
        if reported.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < every * 2 {
            continue;
        }
        let c = consumer.clone();
        match tokio::task::spawn_blocking(move || lag_of(&c)).await {
            Ok(Ok(lags)) => {
                for (topic, partition, lag) in lags {
                    ops.lag(&group, &topic, partition, Some(lag));
                }
            }
            Ok(Err(e)) => tracing::debug!(group = %group, error = %e, "cannot measure the lag; will try again"),
            Err(_) => return,
        }
    }
}

impl ConsumerContext for CommitOnRevoke {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.ops.consumer_assigned(&self.group, tpl.count());
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            for el in revoked.elements() {
                self.ops.lag(&self.group, el.topic(), el.partition(), None);
            }
            let tpl = take_pending(&self.pending);
            if tpl.count() > 0 {
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => {
                        tracing::info!(group = %self.group, "committed offsets of revoked partitions")
                    }
                    Err(e) => {
                        tracing::warn!(group = %self.group, error = %e, "commit on revoke failed")
                    }
                }
            }
        }
    }
}

fn take_pending(pending: &Pending) -> TopicPartitionList {
    let mut map = pending.lock().unwrap_or_else(|e| e.into_inner());
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in std::mem::take(&mut *map) {
        let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(next));
    }
    tpl
}

/// Runs the consumer until shutdown, then commits what was handled.
/// Runs a consumer as a supervised task: when it fails, the service shuts
/// down (see [`crate::shutdown::spawn_supervised`]).
pub fn spawn<H: Handler>(
    task: &'static str,
    kafka: &KafkaConfig,
    settings: ConsumerSettings,
    handler: Arc<H>,
    dlq: EventProducer,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<Result<()>> {
    crate::shutdown::spawn_supervised(task, shutdown, run(kafka.clone(), settings, handler, dlq, shutdown.clone()))
}

pub async fn run<H: Handler>(
    kafka: KafkaConfig,
    settings: ConsumerSettings,
    handler: Arc<H>,
    dlq: EventProducer,
    shutdown: Shutdown,
) -> Result<()> {
    let group = format!("{}{}", kafka.group_prefix, settings.group);
    let pending: Pending = Arc::default();
    let consumer: StreamConsumer<CommitOnRevoke> = client_config(&kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.clamp(1, 60_000).to_string())
        .set("statistics.interval.ms", kafka.lag_interval_ms.max(100).to_string())
        .create_with_context(CommitOnRevoke {
            pending: pending.clone(),
            group: group.clone(),
            ops: settings.ops.clone(),
            reported: Arc::new(Mutex::new(Instant::now())),
        })?;
    let consumer = Arc::new(consumer);
    settings.ops.consumer_started(&group, kafka.ready_max_lag);
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %group, topics = ?settings.topics, "consumer started");

    // Stops with the loop, however it ends.
    let _lag = AbortOnDrop(tokio::spawn(watch_lag(
        consumer.clone(),
        settings.ops.clone(),
        group.clone(),
        Duration::from_millis(kafka.lag_interval_ms.max(100)),
        shutdown.clone(),
    )));
    let ctx = Ctx { handler, dlq, shutdown: shutdown.clone(), service: settings.service, group: group.clone(), ops: settings.ops.clone() };
    let mut last_commit = Instant::now();
    let mut dirty = false;
    loop {
        let first = tokio::select! {
            _ = shutdown.wait() => break,
            // Idle with work handled but not committed: commit it now, so the
            // group's offsets (its lag, and what readers wait for) are current.
            _ = tokio::time::sleep(settings.commit_interval), if dirty => {
                commit(&consumer, &pending, CommitMode::Async);
                last_commit = Instant::now();
                dirty = false;
                continue;
            }
            m = consumer.recv() => m,
        };
        let mut batch = match first {
            Ok(m) => vec![Incoming::from_message(&m)],
            Err(e) => {
                tracing::warn!(group = %group, error = %e, "consume failed");
                if !sleep_or_shutdown(Duration::from_millis(200), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        while batch.len() < settings.max_batch {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(Incoming::from_message(&m)),
                Some(Err(_)) | None => break,
            }
        }
        if !ctx.handle_batch(&batch).await {
            // Shutdown interrupted a retry: nothing of this batch is
            // committed; it is redelivered to the next owner.
            break;
        }
        {
            let mut map = pending.lock().unwrap_or_else(|e| e.into_inner());
            for m in &batch {
                let next = map.entry((m.topic.clone(), m.partition)).or_insert(0);
                *next = (*next).max(m.offset + 1);
            }
        }
        dirty = true;
        if last_commit.elapsed() >= settings.commit_interval {
            commit(&consumer, &pending, CommitMode::Async);
            last_commit = Instant::now();
            dirty = false;
        }
    }
    if dirty || !pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        commit(&consumer, &pending, CommitMode::Sync);
    }
    settings.ops.consumer_stopped(&group);
    tracing::info!(group = %group, "consumer drained");
    Ok(())
}

fn commit(consumer: &StreamConsumer<CommitOnRevoke>, pending: &Pending, mode: CommitMode) {
    let tpl = take_pending(pending);
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "offset commit failed; will retry with the next commit");
        // put them back so the next commit includes them
        let mut map = pending.lock().unwrap_or_else(|e| e.into_inner());
        for el in tpl.elements() {
            if let Offset::Offset(o) = el.offset() {
                let next = map.entry((el.topic().to_owned(), el.partition())).or_insert(0);
                *next = (*next).max(o);
            }
        }
    }
}

struct Ctx<H> {
    handler: Arc<H>,
    dlq: EventProducer,
    shutdown: Shutdown,
    service: &'static str,
    group: String,
    ops: Ops,
}

impl<H: Handler> Ctx<H> {
    /// Handles a batch: one key's messages in order, keys concurrently.
    /// Returns false if shutdown interrupted it.
    async fn handle_batch(&self, batch: &[Incoming]) -> bool {
        let mut by_key: HashMap<(i32, Option<&[u8]>), Vec<&Incoming>> = HashMap::new();
        let mut order = Vec::new();
        for m in batch {
            let k = (m.partition, m.key.as_deref());
            if !by_key.contains_key(&k) {
                order.push(k);
            }
            by_key.entry(k).or_default().push(m);
        }
        let runs = order.into_iter().filter_map(|k| by_key.remove(&k)).map(|msgs| async move {
            for m in msgs {
                if !self.handle_one(m).await {
                    return false;
                }
            }
            true
        });
        futures::future::join_all(runs).await.into_iter().all(|ok| ok)
    }

    async fn handle_one(&self, m: &Incoming) -> bool {
        let span = tracing::info_span!(
            "consume",
            service = self.service,
            topic = %m.topic,
            partition = m.partition,
            offset = m.offset,
            ticket = m.key.as_deref().map(String::from_utf8_lossy).as_deref().unwrap_or(""),
            event = m.header("event-type").unwrap_or(""),
        );
        telemetry::set_parent(&span, m.header("traceparent"));
        let started = Instant::now();
        let event = m.header("event-type").unwrap_or("");
        let handled = Retry::CONSUMER
            .run(
                &self.shutdown,
                // A handler that panics on a message (data it cannot handle)
                // has it dead-lettered, like any poison; the partition goes on.
                |_| {
                    std::panic::AssertUnwindSafe(self.handler.handle(m).instrument(span.clone()))
                        .catch_unwind()
                        .map(|r| r.unwrap_or_else(|p| Err(HandleError::Poison(format!("{PANICKED}: {}", panic_text(&*p))))))
                },
                |e| matches!(e, HandleError::Poison(_)),
                |attempt, e, wait| {
                    if let HandleError::Retry(reason) = e {
                        self.ops.retried(&self.group, reason);
                    }
                    tracing::warn!(parent: &span, reason = %e, attempt, wait_ms = wait.as_millis() as u64, "handling failed; will retry");
                },
            )
            .await;
        let (why, reason) = match handled {
            Ok(()) => {
                self.ops.handled(&self.group, event, false, started.elapsed());
                return true;
            }
            Err(GaveUp::ShuttingDown(_)) => return false,
            Err(GaveUp::Failed { error: HandleError::Poison(reason), .. }) if reason.starts_with(PANICKED) => {
                (DeadLetterReason::Panicked, reason)
            }
            Err(GaveUp::Failed { error: HandleError::Poison(reason), .. }) => (DeadLetterReason::Poison, reason),
            Err(GaveUp::Failed { error: HandleError::Retry(reason), .. }) => (DeadLetterReason::RetriesExhausted, reason),
        };
        // A reason may quote its input: no citizen's contact in the log or the topic.
        let reason = crate::redact::text(&reason);
        tracing::warn!(parent: &span, %reason, "message dead-lettered");
        let sent = self.dead_letter(m, &reason).await;
        if sent {
            self.ops.dead_lettered(&self.group, why);
            self.ops.handled(&self.group, event, true, started.elapsed());
        }
        sent
    }

    async fn dead_letter(&self, m: &Incoming, reason: &str) -> bool {
        /// What is kept of a dead letter too big to publish whole.
        const TRUNCATED_TO: usize = 64 * 1024;
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header { key: k, value: v.as_deref() });
        }
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let at = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        headers = headers
            .insert(Header { key: "dlq-reason", value: Some(reason) })
            .insert(Header { key: "dlq-topic", value: Some(m.topic.as_str()) })
            .insert(Header { key: "dlq-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dlq-offset", value: Some(offset.as_str()) })
            .insert(Header { key: "dlq-service", value: Some(self.service) })
            .insert(Header { key: "dlq-group", value: Some(self.group.as_str()) })
            .insert(Header { key: "dlq-at", value: Some(at.as_str()) });
        let topic = self.dlq.topics().dead_letter();
        let mut payload = crate::redact::payload(m.payload.as_deref().unwrap_or_default());
        loop {
            let sent = Retry::CONSUMER
                .run(
                    &self.shutdown,
                    |_| self.dlq.send(&topic, m.key.as_deref(), &payload, headers.clone()),
                    |e| e.is_too_big() && !payload.is_empty(),
                    |attempt, e, _| {
                        tracing::error!(error = %e, attempt, topic = %m.topic, partition = m.partition, offset = m.offset, "dead-letter publish failed");
                    },
                )
                .await;
            match sent {
                Ok(_) => return true,
                Err(GaveUp::ShuttingDown(_)) => return false,
                // Too big: with the reason's headers it no longer fits. Keep
                // its start and say how long it was, rather than stall.
                Err(GaveUp::Failed { .. }) => {
                    let size = m.payload.as_ref().map_or(0, Vec::len).to_string();
                    headers = headers.insert(Header { key: "dlq-truncated", value: Some(size.as_str()) });
                    let keep = if payload.len() > TRUNCATED_TO { TRUNCATED_TO } else { 0 };
                    tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, bytes = payload.len(), keep, "dead letter too big; truncated");
                    payload.truncate(keep);
                }
            }
        }
    }
}

/// How a dead letter's reason starts when the handler panicked.
const PANICKED: &str = "the handler panicked";

/// What a panic said, if it said it in words.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_decides_whether_a_message_is_retried_or_dead_lettered() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
        let retried = [
            Error::Kafka(KafkaError::MessageProduction(C::BrokerTransportFailure)),
            Error::Redis(redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"))),
            Error::ShuttingDown,
            Error::Config("kafka.brokers: unreachable".into()),
        ];
        for e in retried {
            assert!(matches!(HandleError::from(e), HandleError::Retry(_)));
        }
        let poison = [
            Error::Kafka(KafkaError::MessageProduction(C::MessageSizeTooLarge)),
            Error::Corrupt("t-1".into(), "expected value".into()),
            Error::Json(serde_json::from_str::<u8>("x").unwrap_err()),
            Error::Redis(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "not a hash"))),
        ];
        for e in poison {
            let said = e.to_string();
            assert_eq!(HandleError::from(e), HandleError::Poison(said));
        }
    }
}

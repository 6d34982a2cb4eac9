//! The Kafka producer every service publishes with: idempotent, acks=all,
//! events keyed by ticket id, W3C `traceparent` in the headers.

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use whistle_domain::Event;

use crate::{KafkaConfig, Result, Topics, telemetry};

/// Base client settings: brokers and the extra properties from config
/// (TLS and SASL among them: librdkafka is built with OpenSSL).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v.expose());
    }
    if let Some(p) = &cfg.sasl_password {
        c.set("sasl.password", p.expose());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    /// What production brokers ask for is built in: TLS, and SASL with
    /// SCRAM or OAUTHBEARER (a client without them refuses the settings).
    #[test]
    fn tls_and_sasl_settings_make_a_client() {
        for (protocol, mechanism) in [
            ("SSL", None),
            ("SASL_SSL", Some("SCRAM-SHA-512")),
            ("SASL_SSL", Some("SCRAM-SHA-256")),
            ("SASL_SSL", Some("OAUTHBEARER")),
            ("SASL_PLAINTEXT", Some("PLAIN")),
        ] {
            let mut cfg = KafkaConfig::default();
            cfg.properties.insert("security.protocol".into(), Secret::new(protocol.into()));
            if let Some(m) = mechanism {
                cfg.properties.insert("sasl.mechanism".into(), Secret::new(m.into()));
                cfg.properties.insert("sasl.username".into(), Secret::new("whistle".into()));
                cfg.sasl_password = Some(Secret::new("s3cret".into()));
            }
            if mechanism == Some("OAUTHBEARER") {
                cfg.sasl_password = None;
                cfg.properties.insert("sasl.oauthbearer.config".into(), Secret::new("principal=whistle".into()));
                cfg.properties.insert("enable.sasl.oauthbearer.unsecure.jwt".into(), Secret::new("true".into()));
            }
            let made: std::result::Result<FutureProducer, _> = client_config(&cfg).create();
            assert!(made.is_ok(), "{protocol} {mechanism:?}: {:?}", made.err());
        }
    }
}

/// Publishes events (and dead letters). Cheap to clone.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
    topics: Topics,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer").field("topics", &self.topics).finish()
    }
}

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl EventProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        let inner: FutureProducer = client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(EventProducer { inner, topics: Topics::new(cfg) })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Publishes one event and returns once the broker has acknowledged it
    /// (all in-sync replicas).
    pub async fn publish(&self, event: &Event) -> Result<Position> {
        let payload = whistle_proto::encode_event(event);
        let key = event.ticket_id.to_string();
        let id = event.id.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "event-type", value: Some(event.kind.name()) })
            .insert(Header { key: "event-id", value: Some(id.as_str()) });
        if let Some(tp) = telemetry::current_traceparent() {
            headers = headers.insert(Header { key: "traceparent", value: Some(tp.as_str()) });
        }
        self.send(&self.topics.events(), Some(key.as_bytes()), &payload, headers).await
    }

    /// Publishes raw bytes to any topic, waiting for the acknowledgement.
    pub async fn send(&self, topic: &str, key: Option<&[u8]>, payload: &[u8], headers: OwnedHeaders) -> Result<Position> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self.inner.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
        Ok(Position { partition: delivery.partition, offset: delivery.offset })
    }

    /// Whether the broker answers a metadata request within `timeout`.
    pub async fn reachable(&self, timeout: Duration) -> Result<()> {
        use rdkafka::producer::Producer;
        let producer = self.inner.clone();
        let topic = self.topics.events();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&topic), timeout).map(drop))
            .await
            .map_err(|e| crate::Error::task("broker check", e))??;
        Ok(())
    }

    /// Waits for everything in flight to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

/// One message read by [`scan_topic`].
#[derive(Debug, Clone)]
pub struct Scanned {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// The partitions of `topic` that hold messages now, with their low and
/// high watermarks.
fn holding<C: rdkafka::consumer::Consumer<Ctx>, Ctx: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>> {
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = Vec::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if hi > lo {
            out.push((p, lo, hi));
        }
    }
    Ok(out)
}

/// Reads a whole topic, every partition from its start up to the end it had
/// when the scan began, without joining any consumer group. Blocking: call it
/// from a blocking task. Used to rebuild state that Redis lost, and by tests.
pub fn scan_topic(cfg: &KafkaConfig, topic: &str, mut each: impl FnMut(Scanned)) -> Result<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use std::collections::HashMap;
    use std::time::Instant;

    let consumer: BaseConsumer = client_config(cfg)
        .set("group.id", format!("{}scan-{}", cfg.group_prefix, std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = HashMap::new();
    for (p, lo, hi) in holding(&consumer, topic)? {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(lo))?;
        ends.insert(p, hi);
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                if ends.get(&m.partition()).is_some_and(|end| m.offset() < *end) {
                    read += 1;
                    each(Scanned {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                }
                if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None if last_progress.elapsed() > Duration::from_secs(30) => {
                return Err(crate::Error::Topic { topic: topic.to_owned(), reason: "no progress reading the topic for 30 s".into() });
            }
            None => {}
        }
    }
    Ok(read)
}

/// Whether consumer group `group` (without the configured prefix) has
/// committed everything `topic` held when asked: every partition's committed
/// offset at its high watermark. Blocking.
pub fn group_caught_up(cfg: &KafkaConfig, group: &str, topic: &str) -> Result<bool> {
    let ends = ends(cfg, topic)?;
    group_reached(cfg, group, topic, &ends)
}

/// The end (high watermark) of every partition of `topic` that holds
/// messages. Blocking.
pub fn ends(cfg: &KafkaConfig, topic: &str) -> Result<Vec<(i32, i64)>> {
    let consumer: rdkafka::consumer::BaseConsumer = client_config(cfg).create()?;
    Ok(holding(&consumer, topic)?.into_iter().map(|(p, _, hi)| (p, hi)).collect())
}

/// Whether consumer group `group` (without the configured prefix) has
/// committed at least `ends` (partition, offset) on `topic`: handled
/// everything before them. Blocking.
pub fn group_reached(cfg: &KafkaConfig, group: &str, topic: &str, ends: &[(i32, i64)]) -> Result<bool> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if ends.is_empty() {
        return Ok(true);
    }
    let consumer: BaseConsumer =
        client_config(cfg).set("group.id", format!("{}{group}", cfg.group_prefix)).set("enable.auto.commit", "false").create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, _) in ends {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(ends.iter().all(|(p, end)| {
        committed.elements().iter().any(|e| e.partition() == *p && matches!(e.offset(), rdkafka::Offset::Offset(o) if o >= *end))
    }))
}

/// The assessment figures of `[from, to)`, folded from the whole events
/// topic (blocking: run it on a blocking thread). A ticket's events are on
/// one partition, read in order, which is all the fold needs.
pub fn figures(cfg: &KafkaConfig, from: time::OffsetDateTime, to: time::OffsetDateTime) -> Result<whistle_domain::figures::Figures> {
    let topic = crate::Topics::new(cfg).events();
    let mut f = whistle_domain::figures::Figures::new(from, to);
    scan_topic(cfg, &topic, |m| {
        if let Ok(e) = whistle_proto::decode_event(&m.payload) {
            f.apply(&e);
        }
    })?;
    Ok(f)
}

//! The Kafka producer every service publishes with: idempotent, acks=all,
//! events keyed by ticket id, W3C `traceparent` in the headers.

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use whistle_domain::Event;

use crate::{KafkaConfig, Result, Topics, telemetry};

/// Base client settings: brokers and the extra properties from config.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v.expose());
    }
    c
}

/// Publishes events (and dead letters). Cheap to clone.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
    topics: Topics,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("topics", &self.topics)
            .finish()
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
        Ok(EventProducer {
            inner,
            topics: Topics::new(cfg),
        })
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
            .insert(Header {
                key: "event-type",
                value: Some(event.kind.name()),
            })
            .insert(Header {
                key: "event-id",
                value: Some(id.as_str()),
            });
        if let Some(tp) = telemetry::current_traceparent() {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp.as_str()),
            });
        }
        self.send(
            &self.topics.events(),
            Some(key.as_bytes()),
            &payload,
            headers,
        )
        .await
    }

    /// Publishes raw bytes to any topic, waiting for the acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Position> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .inner
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
        Ok(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// Waits for everything in flight to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

//! What landed on Kafka, read back; publishing as an outside system would.

use std::collections::HashMap;
use std::time::Duration;
use whistle_domain::{Event, TicketId};
use whistle_runtime::{KafkaConfig, Topics};

use crate::*;

impl Platform {
    pub fn topics(&self) -> Topics {
        Topics::new(&self.kafka)
    }

    /// Every event of one ticket on the events topic, in order.
    pub async fn events_for(&self, ticket: &str) -> Vec<Event> {
        let id = TicketId::parse(ticket).expect("ticket id");
        self.read_topic(&self.topics().events())
            .await
            .into_iter()
            .filter(|m| m.key.as_deref() == Some(id.to_string().as_bytes()))
            .filter_map(|m| whistle_proto::decode_event(&m.payload).ok())
            .collect()
    }

    /// Every message on a topic (all partitions, up to the current end).
    pub async fn read_topic(&self, topic: &str) -> Vec<Raw> {
        let kafka = self.kafka.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || read_all(&kafka, &topic)).await.expect("read topic")
    }

    /// Waits until at least `n` dead letters satisfy `pred`.
    pub async fn wait_dead_letters(&self, n: usize, within: Duration, pred: impl Fn(&Raw) -> bool) -> Vec<Raw> {
        let pred = &pred;
        eventually(&format!("{n} dead letters"), within, Duration::from_millis(100), || async move {
            let found: Vec<Raw> = self.read_topic(&self.topics().dead_letter()).await.into_iter().filter(|m| pred(m)).collect();
            if found.len() >= n { Ok(found) } else { Err(format!("{} of them", found.len())) }
        })
        .await
    }

    /// Waits until consumer group `group` (as configured, without the
    /// test's prefix) has handled, and committed, everything on the events
    /// topic up to `at`.
    pub async fn wait_handled(&self, group: &str, at: &whistle_runtime::kafka::Position) {
        let (kafka, group_id, topic, at) = (self.kafka.clone(), group.to_owned(), self.topics().events(), *at);
        eventually(
            &format!("group {group} past offset {} of partition {}", at.offset, at.partition),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                let (kafka, group_id, topic) = (kafka.clone(), group_id.clone(), topic.clone());
                async move {
                    let reached = tokio::task::spawn_blocking(move || {
                        whistle_runtime::kafka::group_reached(&kafka, &group_id, &topic, &[(at.partition, at.offset + 1)])
                    })
                    .await
                    .expect("join")
                    .map_err(|e| e.to_string())?;
                    if reached { Ok(()) } else { Err("not yet committed".to_owned()) }
                }
            },
        )
        .await
    }

    /// Publishes raw bytes to the events topic (to test poison handling).
    pub async fn publish_raw(&self, key: &str, payload: &[u8]) {
        self.publish_to(&self.topics().events(), key, payload).await
    }

    /// Publishes raw bytes to a topic, as an external system would.
    pub async fn publish_to(&self, topic: &str, key: &str, payload: &[u8]) {
        let producer = whistle_runtime::EventProducer::new(&self.kafka).expect("producer");
        producer.send(topic, Some(key.as_bytes()), payload, rdkafka::message::OwnedHeaders::new()).await.expect("publish raw");
    }

    /// Publishes a domain event, as a desk or another service would.
    pub async fn publish_event(&self, e: &Event) {
        whistle_runtime::EventProducer::new(&self.kafka).expect("producer").publish(e).await.expect("publish event");
    }
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

pub(crate) fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<Raw> {
    let mut out = Vec::new();
    whistle_runtime::kafka::scan_topic(kafka, topic, |m| {
        out.push(Raw {
            partition: m.partition,
            offset: m.offset,
            key: m.key,
            payload: m.payload,
            headers: m.headers.into_iter().collect(),
        });
    })
    .expect("read topic");
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

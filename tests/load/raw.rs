//! The raw broker's ceiling, in the same run: messages of the events'
//! mean size, keyed and with headers like them, on a topic with the events
//! topic's partitions, sent with the platform's producer settings
//! (idempotent, acks=all, linger 5 ms) while one consumer group with the
//! platform's fetch settings reads them. Each message counts once.

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};
use whistle_runtime::KafkaConfig;
use whistle_tests::stats::percentile_ms;

/// What the raw run sends: the platform's messages and producer unless
/// `LOAD_RAW_HEADERS=0`, `LOAD_RAW_KEYS=0`, `LOAD_RAW_IDEMPOTENT=false`,
/// `LOAD_RAW_ACKS=1` or `LOAD_RAW_LINGER=<ms>` say otherwise (to see what
/// costs the broker what).
#[derive(Debug, Clone)]
pub struct Shape {
    pub headers: bool,
    pub keys: bool,
    pub idempotent: String,
    pub acks: String,
    pub linger_ms: String,
}

impl Shape {
    pub fn from_env() -> Shape {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Shape {
            headers: var("LOAD_RAW_HEADERS", "1") != "0",
            keys: var("LOAD_RAW_KEYS", "1") != "0",
            idempotent: var("LOAD_RAW_IDEMPOTENT", "true"),
            acks: var("LOAD_RAW_ACKS", "all"),
            linger_ms: var("LOAD_RAW_LINGER", "5"),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}, {}, idempotence {}, acks={}, linger {} ms",
            if self.keys { "keyed" } else { "no keys" },
            if self.headers { "two headers" } else { "no headers" },
            self.idempotent,
            self.acks,
            self.linger_ms
        )
    }
}

#[derive(Debug, Clone)]
pub struct Raw {
    pub messages: u64,
    pub size: usize,
    /// Messages acknowledged per second.
    pub produced_per_s: f64,
    /// Messages produced and read by the group per second (each counted once).
    pub through_per_s: f64,
    /// Produce → consume latency, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn ceiling(kafka: &KafkaConfig, partitions: i32, size: usize, messages: u64, shape: &Shape) -> anyhow::Result<Raw> {
    let topic = format!("{}raw-ceiling", kafka.topic_prefix);
    let admin: AdminClient<DefaultClientContext> = whistle_runtime::kafka::client_config(kafka).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(&[NewTopic::new(&topic, partitions, TopicReplication::Fixed(kafka.replication))], &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    let consumer: StreamConsumer = whistle_runtime::kafka::client_config(kafka)
        .set("group.id", format!("{}raw-ceiling", kafka.group_prefix))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let consumer = Arc::new(consumer);
    let origin = Instant::now();
    let reader = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(messages as usize);
            let mut stream = consumer.stream();
            while (latencies.len() as u64) < messages {
                let Some(Ok(m)) = stream.next().await else { continue };
                let payload = m.payload().unwrap_or_default();
                let sent = u64::from_le_bytes(payload.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
                latencies.push(origin.elapsed().saturating_sub(Duration::from_nanos(sent)));
            }
            latencies
        })
    };
    // The group has its partitions before the clock starts.
    let joined = Instant::now();
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        anyhow::ensure!(joined.elapsed() < Duration::from_secs(60), "the raw consumer got no partitions within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let producer: FutureProducer = whistle_runtime::kafka::client_config(kafka)
        .set("enable.idempotence", &shape.idempotent)
        .set("acks", &shape.acks)
        .set("linger.ms", &shape.linger_ms)
        .set("message.timeout.ms", "30000")
        .create()?;
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..messages {
        let mut payload = vec![b'x'; size.max(8)];
        payload[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        let key = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let id = format!("{key}-raw");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "event-type", value: Some("received") })
            .insert(Header { key: "event-id", value: Some(id.as_str()) });
        let (producer, topic, headed, keyed) = (producer.clone(), topic.clone(), shape.headers, shape.keys);
        acks.push(async move {
            let record = FutureRecord::to(&topic).payload(&payload);
            let record = if headed { record.headers(headers) } else { record };
            let record = if keyed { record.key(&key) } else { record };
            producer.send(record, Duration::from_secs(30)).await.map(drop).map_err(|(e, _)| e)
        });
        // Keep at most 2,000 unacknowledged, as a busy service would.
        while acks.len() >= 2_000 {
            acks.next().await.expect("an ack")?;
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let produced = start.elapsed();
    let mut latencies = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .map_err(|_| anyhow::anyhow!("the raw consumer did not read {messages} messages within 300 s"))??;
    let through = start.elapsed();
    latencies.sort();
    Ok(Raw {
        messages,
        size,
        produced_per_s: messages as f64 / produced.as_secs_f64(),
        through_per_s: messages as f64 / through.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 0.5),
        p99_ms: percentile_ms(&latencies, 0.99),
    })
}

//! What the run sees of the platform, timed as it happens: every event on
//! the topic (a consumer of its own), every message the notifier delivers
//! (the run is the webhook receiver and the SMS gateway), and how far each
//! service's consumer group has committed.

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use whistle_domain::{EventKind, PlatformId};
use whistle_runtime::KafkaConfig;

/// What the topic said of one ticket, and when the run saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub received: Option<Instant>,
    pub classified: Option<Instant>,
    pub triage: bool,
    pub dispatched: Option<Dispatch>,
    /// Delegated to a platform whose dispatcher is not in the run.
    pub delegated_away: Option<Instant>,
    pub completed: Option<Instant>,
    pub closed_or_reopened: Option<Instant>,
    pub extension_decided: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Dispatch {
    pub at: Instant,
    pub partition: i32,
    pub offset: i64,
    pub platform: PlatformId,
    pub unit: String,
    pub due_at: time::OffsetDateTime,
}

#[derive(Default)]
pub struct Topic {
    pub tickets: HashMap<String, Seen>,
    /// Each ticket's number, by ticket id, from its `received` event.
    pub numbers: HashMap<String, String>,
    /// The tickets registered for each external id (one, unless a retry
    /// registered the same request twice).
    pub external_ids: HashMap<String, Vec<String>>,
    pub events: u64,
    pub payload_bytes: u64,
    pub undecodable: u64,
}

/// Follows the events topic from its start.
pub struct Watcher {
    pub topic: Arc<Mutex<Topic>>,
    /// Tickets as they are dispatched: (ticket id, the dispatch).
    pub dispatched: tokio::sync::broadcast::Sender<(String, Dispatch)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    pub fn start(kafka: &KafkaConfig, running: &[PlatformId]) -> anyhow::Result<Watcher> {
        let consumer: StreamConsumer = whistle_runtime::kafka::client_config(kafka)
            .set("group.id", format!("{}load-watch", kafka.group_prefix))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            // Times come from the events' own timestamps (when the service
            // produced them), so this reader need not ask the broker often.
            .set("fetch.wait.max.ms", "500")
            .create()?;
        consumer.subscribe(&[&whistle_runtime::Topics::new(kafka).events()])?;
        let topic: Arc<Mutex<Topic>> = Arc::default();
        let (dispatched, _) = tokio::sync::broadcast::channel(100_000);
        let (t, tx, running) = (topic.clone(), dispatched.clone(), running.to_vec());
        // The same moment on both clocks, to read the events' timestamps
        // (milliseconds since the epoch, this machine's clock) as instants.
        let (wall, mono) = (std::time::SystemTime::now(), Instant::now());
        let task = tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else { continue };
                let now = m
                    .timestamp()
                    .to_millis()
                    .and_then(|ms| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms as u64)))
                    .map(|at| match at.duration_since(wall) {
                        Ok(after) => mono + after,
                        Err(before) => mono.checked_sub(before.duration()).unwrap_or(mono),
                    })
                    .unwrap_or_else(Instant::now);
                let payload = m.payload().unwrap_or_default();
                let mut topic = t.lock().unwrap();
                topic.events += 1;
                topic.payload_bytes += payload.len() as u64;
                let Ok(e) = whistle_proto::decode_event(payload) else {
                    topic.undecodable += 1;
                    continue;
                };
                let id = e.ticket_id.to_string();
                if let EventKind::Received { number, request } = &e.kind {
                    topic.numbers.insert(id.clone(), number.to_string());
                    if let Some(ext) = &request.external_id {
                        let ids = topic.external_ids.entry(ext.clone()).or_default();
                        if !ids.contains(&id) {
                            ids.push(id.clone());
                        }
                    }
                }
                let seen = topic.tickets.entry(id.clone()).or_default();
                match &e.kind {
                    EventKind::Received { .. } => {
                        seen.received.get_or_insert(now);
                    }
                    EventKind::Classified { triage, .. } => {
                        seen.classified.get_or_insert(now);
                        seen.triage = *triage;
                    }
                    EventKind::Dispatched { platform, unit, deadline, .. } if seen.dispatched.is_none() => {
                        let d = Dispatch {
                            at: now,
                            partition: m.partition(),
                            offset: m.offset(),
                            platform: platform.clone(),
                            unit: unit.to_string(),
                            due_at: deadline.due_at,
                        };
                        seen.dispatched = Some(d.clone());
                        let _ = tx.send((id, d));
                    }
                    EventKind::Delegated { to, .. } if !running.contains(to) => {
                        seen.delegated_away.get_or_insert(now);
                    }
                    EventKind::Completed { .. } => {
                        seen.completed.get_or_insert(now);
                    }
                    EventKind::Closed { .. } | EventKind::Reopened { .. } => {
                        seen.closed_or_reopened.get_or_insert(now);
                    }
                    EventKind::ExtensionDecided(_) => {
                        seen.extension_decided.get_or_insert(now);
                    }
                    _ => {}
                }
            }
        });
        Ok(Watcher { topic, dispatched, task })
    }
}

/// The first delivery of each (template, ticket number, recipient kind),
/// and how many times each (template, ticket number, recipient and
/// channel) was delivered.
#[derive(Default)]
pub struct Deliveries {
    pub first: HashMap<(String, String, String), Instant>,
    pub counts: HashMap<(String, String, String), u32>,
    pub count: u64,
}

/// The notifier's webhook receiver and SMS gateway: records and accepts.
#[derive(Clone)]
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub got: Arc<Mutex<Deliveries>>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let me = Receiver { addr: listener.local_addr()?, got: Arc::default() };
        let got = me.got.clone();
        let record = move |axum::Json(body): axum::Json<serde_json::Value>| {
            let got = got.clone();
            async move {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                let key = (s(&body["template"]), s(&body["ticket_number"]), s(&body["recipient"]["kind"]));
                let mut got = got.lock().unwrap();
                got.count += 1;
                // The SMS body names the recipient by kind and id; the webhook's by kind and unit, leader or platform.
                let whom = format!("{} {}", body["recipient"], s(&body["channel"]));
                *got.counts.entry((key.0.clone(), key.1.clone(), whom)).or_default() += 1;
                got.first.entry(key).or_insert_with(Instant::now);
                axum::http::StatusCode::OK
            }
        };
        let app = axum::Router::new().route("/messages", post(record.clone())).route("/sms", post(record));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(me)
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/messages", self.addr)
    }

    pub fn sms_url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    pub fn first(&self, template: &str, number: &str, kind: &str) -> Option<Instant> {
        self.got.lock().unwrap().first.get(&(template.to_owned(), number.to_owned(), kind.to_owned())).copied()
    }
}

/// When, and each partition's committed offset then.
type Sample = (Instant, Vec<i64>);

/// How far each group has committed on the events topic, sampled on a
/// thread of its own: the `fine` group every 50 ms, the others every
/// half second. Each sample: (when, committed offset per partition).
pub struct Commits {
    pub samples: Arc<Mutex<HashMap<String, Vec<Sample>>>>,
    stop: Arc<AtomicBool>,
    pub polls: Arc<AtomicU64>,
    /// The last error asking the broker for a group's offsets.
    pub error: Arc<Mutex<Option<String>>>,
}

impl Commits {
    pub fn start(kafka: &KafkaConfig, groups: &[String], fine: &str, partitions: i32) -> anyhow::Result<Commits> {
        let topic = whistle_runtime::Topics::new(kafka).events();
        let mut consumers = Vec::new();
        for g in groups {
            let c: BaseConsumer =
                whistle_runtime::kafka::client_config(kafka).set("group.id", g).set("enable.auto.commit", "false").create()?;
            consumers.push((g.clone(), c));
        }
        let me = Commits { samples: Arc::default(), stop: Arc::default(), polls: Arc::default(), error: Arc::default() };
        let (samples, stop, polls, fine, error) =
            (me.samples.clone(), me.stop.clone(), me.polls.clone(), fine.to_owned(), me.error.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for (g, c) in consumers.iter().filter(|(g, _)| *g == fine || round % 10 == 1) {
                    let mut tpl = rdkafka::TopicPartitionList::new();
                    for p in 0..partitions {
                        tpl.add_partition(&topic, p);
                    }
                    let committed = match c.committed_offsets(tpl, Duration::from_secs(5)) {
                        Ok(c) => c,
                        Err(e) => {
                            *error.lock().unwrap() = Some(format!("{g}: {e}"));
                            continue;
                        }
                    };
                    let now = Instant::now();
                    let offsets: Vec<i64> = (0..partitions)
                        .map(|p| {
                            committed
                                .elements()
                                .iter()
                                .find(|e| e.partition() == p)
                                .and_then(|e| if let rdkafka::Offset::Offset(o) = e.offset() { Some(o) } else { None })
                                .unwrap_or(0)
                        })
                        .collect();
                    let mut s = samples.lock().unwrap();
                    let v = s.entry(g.clone()).or_default();
                    if v.last().is_none_or(|(_, last)| *last != offsets) {
                        v.push((now, offsets));
                    }
                }
                polls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(me)
    }

    /// When `group` first had committed past `offset` of `partition`.
    pub fn past(&self, group: &str, partition: i32, offset: i64) -> Option<Instant> {
        let s = self.samples.lock().unwrap();
        s.get(group)?.iter().find(|(_, o)| o.get(partition as usize).is_some_and(|c| *c > offset)).map(|(t, _)| *t)
    }

    /// The group's committed offsets now (its last sample).
    pub fn latest(&self, group: &str) -> Vec<i64> {
        self.samples.lock().unwrap().get(group).and_then(|v| v.last()).map(|(_, o)| o.clone()).unwrap_or_default()
    }
}

impl Drop for Commits {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The end offset of each partition of `topic`, by partition (empty if the
/// broker does not answer).
pub fn ends(kafka: &KafkaConfig, topic: &str) -> Vec<i64> {
    let ask = || -> anyhow::Result<Vec<i64>> {
        let c: BaseConsumer = whistle_runtime::kafka::client_config(kafka).create()?;
        let meta = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut ids: Vec<i32> = meta.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        ids.sort();
        ids.iter().map(|p| Ok(c.fetch_watermarks(topic, *p, Duration::from_secs(10))?.1)).collect()
    };
    ask().unwrap_or_default()
}

//! The test sandbox: the real broker and Redis (started through the project's
//! own `deploy/local/infra.sh` if they are not up), every service in-process
//! on port 0 with unique topic, group and key prefixes, a real webhook
//! receiver, and helpers to read what landed on Kafka.

pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use whistle_domain::{Clock, DeadlinePolicy, Event, ManualClock, TicketId};
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient};
use whistle_runtime::{KafkaConfig, RedisConfig, Shutdown, Topics};

pub use webhook::{Behaviour, WebhookReceiver};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn city_file() -> PathBuf {
    repo_root().join("deploy/config/demo-city.toml")
}

#[derive(Debug, Clone)]
pub struct Infra {
    pub brokers: String,
    pub redis_url: String,
}

fn port_open(addr: &str) -> bool {
    addr.parse::<SocketAddr>().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// The broker and Redis, started by the project's script if they are down.
pub fn infra() -> &'static Infra {
    static INFRA: OnceLock<Infra> = OnceLock::new();
    INFRA.get_or_init(|| {
        let kafka_port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
        let redis_port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
        let brokers = format!("127.0.0.1:{kafka_port}");
        let redis = format!("127.0.0.1:{redis_port}");
        if !port_open(&brokers) || !port_open(&redis) {
            let status = std::process::Command::new("bash")
                .arg(repo_root().join("deploy/local/infra.sh"))
                .arg("start")
                .status()
                .expect("run deploy/local/infra.sh");
            assert!(status.success(), "deploy/local/infra.sh start failed");
        }
        init_logs();
        Infra { brokers, redis_url: format!("redis://{redis}/0") }
    })
}

/// The 3-node Redis Cluster on loopback, started by the project's script.
pub fn cluster() -> &'static Vec<String> {
    static CLUSTER: OnceLock<Vec<String>> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("deploy/local/redis-cluster.sh"))
            .arg("start")
            .status()
            .expect("run deploy/local/redis-cluster.sh");
        assert!(status.success(), "deploy/local/redis-cluster.sh start failed");
        let ports = std::env::var("REDIS_CLUSTER_PORTS").unwrap_or_else(|_| "7101 7102 7103".into());
        ports.split_whitespace().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    })
}

fn init_logs() {
    whistle_runtime::telemetry::init_for_tests();
}

/// A unique prefix for one test's topics, groups and keys.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{name}-{}-{n}-{}.", std::process::id(), &r[..8])
}

/// What a test may change about the platform.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: DeadlinePolicy,
    pub webhook: Behaviour,
    pub notifier_attempts: u32,
    /// Monday 2026-11-23 10:00 China time unless set.
    pub start: time::OffsetDateTime,
    pub calendar: whistle_dispatcher::CalendarSettings,
    /// Dispatcher instances besides the city's (`county:<code>`, `street:<code>`).
    pub platforms: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: DeadlinePolicy::default(),
            webhook: Behaviour::Accept,
            notifier_attempts: 6,
            start: time::macros::datetime!(2026-11-23 10:00 +08:00),
            calendar: whistle_dispatcher::CalendarSettings::default(),
            platforms: Vec::new(),
        }
    }
}

struct Running {
    shutdown: Shutdown,
    handle: tokio::task::JoinHandle<()>,
}

/// The whole platform, in-process.
pub struct Platform {
    pub prefix: String,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub clock: ManualClock,
    pub intake_addr: SocketAddr,
    pub desk_addr: SocketAddr,
    /// Desk address of every dispatcher instance, by platform.
    pub desks: HashMap<String, SocketAddr>,
    pub webhook: WebhookReceiver,
    options: Options,
    services: HashMap<&'static str, Running>,
}

impl Platform {
    pub async fn start(name: &str) -> Platform {
        Self::start_with(name, Options::default()).await
    }

    pub async fn start_with(name: &str, options: Options) -> Platform {
        let infra = infra();
        let prefix = unique_prefix(name);
        let kafka = KafkaConfig {
            brokers: infra.brokers.clone(),
            topic_prefix: prefix.clone(),
            group_prefix: prefix.clone(),
            create_topics: false,
            ..KafkaConfig::default()
        };
        whistle_runtime::topics::ensure(&kafka).await.expect("create topics");
        let redis = RedisConfig {
            url: whistle_runtime::Secret::new(infra.redis_url.clone()),
            key_prefix: prefix.clone(),
            ..RedisConfig::default()
        };
        let webhook = WebhookReceiver::start(options.webhook.clone()).await;
        let clock = ManualClock::new(options.start);
        let mut p = Platform {
            prefix,
            kafka,
            redis,
            clock,
            intake_addr: ([127, 0, 0, 1], 0).into(),
            desk_addr: ([127, 0, 0, 1], 0).into(),
            desks: HashMap::new(),
            webhook,
            options,
            services: HashMap::new(),
        };
        p.start_intake().await;
        p.start_classifier().await;
        p.start_dispatcher("city").await;
        for platform in p.options.platforms.clone() {
            p.start_dispatcher(platform).await;
        }
        p.start_sla_timer().await;
        p.start_notifier().await;
        p
    }

    fn clock_arc(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    fn spawn<F>(&mut self, name: &'static str, run: impl FnOnce(Shutdown) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(run(shutdown.clone()));
        self.services.insert(name, Running { shutdown, handle });
    }

    pub async fn start_intake(&mut self) {
        let mut config = whistle_intake::Config { kafka: self.kafka.clone(), redis: self.redis.clone(), ..Default::default() };
        config.intake.listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_intake::Intake::build_with_clock(config, self.clock_arc()).await.expect("build intake");
        self.intake_addr = svc.local_addr();
        self.spawn("intake", |s| async move { svc.run(s).await.expect("intake") });
    }

    pub async fn start_classifier(&mut self) {
        let mut config = whistle_classifier::Config { kafka: self.kafka.clone(), ..Default::default() };
        config.classifier.city_file = city_file();
        let svc = whistle_classifier::Classifier::build_with_clock(config, self.clock_arc()).await.expect("build classifier");
        self.spawn("classifier", |s| async move { svc.run(s).await.expect("classifier") });
    }

    pub async fn start_dispatcher(&mut self, platform: &'static str) {
        let mut config = whistle_dispatcher::Config {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            policy: self.options.policy.clone(),
            calendar: self.options.calendar.clone(),
            ..Default::default()
        };
        config.dispatcher.listen = ([127, 0, 0, 1], 0).into();
        config.dispatcher.platform = platform.to_owned();
        config.dispatcher.city_file = city_file();
        config.dispatcher.tokens = DESK_CALLERS
            .iter()
            .map(|c| whistle_dispatcher::auth::TokenEntry {
                caller: (*c).to_owned(),
                sha256: whistle_dispatcher::auth::hash_token(&token_for(c)),
            })
            .collect();
        let svc = whistle_dispatcher::Dispatcher::build_with_clock(config, self.clock_arc()).await.expect("build dispatcher");
        if platform == "city" {
            self.desk_addr = svc.local_addr();
        }
        self.desks.insert(platform.to_owned(), svc.local_addr());
        let name: &'static str = Box::leak(format!("dispatcher:{platform}").into_boxed_str());
        self.spawn(name, |s| async move { svc.run(s).await.expect("dispatcher") });
    }

    pub async fn start_sla_timer(&mut self) {
        let mut config = whistle_sla_timer::Config { kafka: self.kafka.clone(), redis: self.redis.clone(), ..Default::default() };
        // The clock is manual: look at it often.
        config.sla_timer.engine.max_idle_ms = 20;
        let svc = whistle_sla_timer::SlaTimer::build_with_clock(config, self.clock_arc()).await.expect("build sla-timer");
        self.spawn("sla-timer", |s| async move { svc.run(s).await.expect("sla-timer") });
    }

    pub async fn start_notifier(&mut self) {
        let mut config = whistle_notifier::Config { kafka: self.kafka.clone(), redis: self.redis.clone(), ..Default::default() };
        config.notifier.webhook_url = self.webhook.url();
        config.notifier.citizen_webhook_url = self.webhook.url();
        config.notifier.city_file = Some(city_file());
        config.notifier.max_attempts = self.options.notifier_attempts;
        config.notifier.initial_backoff_ms = 50;
        config.notifier.max_backoff_ms = 400;
        let svc = whistle_notifier::Notifier::build(config).await.expect("build notifier");
        self.spawn("notifier", |s| async move { svc.run(s).await.expect("notifier") });
    }

    /// Kills a service the hard way: no drain, no commit (like kill -9).
    pub async fn kill(&mut self, name: &str) {
        let r = self.services.remove(name).unwrap_or_else(|| panic!("{name} is not running"));
        r.handle.abort();
        let _ = r.handle.await;
    }

    /// Stops a service gracefully (SIGTERM: drain and commit).
    pub async fn stop(&mut self, name: &str) {
        let r = self.services.remove(name).unwrap_or_else(|| panic!("{name} is not running"));
        r.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(30), r.handle).await;
    }

    pub async fn shutdown(mut self) {
        let names: Vec<&'static str> = self.services.keys().copied().collect();
        for n in names {
            self.stop(n).await;
        }
    }

    pub async fn intake(&self) -> IntakeClient<Channel> {
        IntakeClient::connect(format!("http://{}", self.intake_addr)).await.expect("connect intake")
    }

    /// A desk client holding the token of `caller` (`unit:<code>`, `city`, ...).
    pub async fn desk_as(&self, caller: &str) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        self.desk_with_token(Some(&token_for(caller))).await
    }

    /// A client of the desk of `platform`, holding the token of `caller`.
    pub async fn desk_at(&self, platform: &str, caller: &str) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let addr = self.desks.get(platform).unwrap_or_else(|| panic!("no dispatcher runs {platform}"));
        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect desk");
        DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(Some(&token_for(caller))).expect("token"))
    }

    pub async fn desk_with_token(&self, token: Option<&str>) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let channel = Channel::from_shared(format!("http://{}", self.desk_addr)).expect("uri").connect().await.expect("connect desk");
        DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token).expect("token"))
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.kafka)
    }

    /// Polls `GetTicket` until `pred` holds; panics with the last view after `within`.
    pub async fn wait_ticket(&self, ticket: &str, within: Duration, pred: impl Fn(&pb::TicketView) -> bool) -> pb::TicketView {
        let mut client = self.intake().await;
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < within {
            if let Ok(v) = client.get_ticket(pb::GetTicketRequest { ticket: ticket.to_owned(), ..Default::default() }).await {
                let v = v.into_inner();
                if pred(&v) {
                    return v;
                }
                last = Some(v);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("ticket {ticket} did not reach the expected state within {within:?}; last seen: {last:#?}");
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
        let start = Instant::now();
        loop {
            let found: Vec<Raw> = self.read_topic(&self.topics().dead_letter()).await.into_iter().filter(|m| pred(m)).collect();
            if found.len() >= n || start.elapsed() > within {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Outstanding timers of a ticket in Redis (due or claimed).
    pub async fn timers_of(&self, ticket: &str) -> usize {
        let store = self.timer_store().await;
        store.timers_of(&TicketId::parse(ticket).expect("ticket id")).await.expect("timers").len()
    }

    /// Timers of a ticket still waiting (not claimed), with due times.
    pub async fn due_of(&self, ticket: &str) -> Vec<(whistle_domain::TimerKind, time::OffsetDateTime)> {
        let store = self.timer_store().await;
        let due = store.due_of(&TicketId::parse(ticket).expect("ticket id")).await.expect("timers");
        due.into_iter()
            .map(|(k, ms)| {
                (
                    k,
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .expect("time")
                        .to_offset(time::macros::offset!(+8)),
                )
            })
            .collect()
    }

    /// Deletes every timer key of this platform: Redis "lost its data".
    pub async fn wipe_timers(&self) {
        let deleted = self.delete_keys(&["{w:*"]).await;
        assert!(deleted > 0, "no timer keys under {}{{w:*", self.prefix);
    }

    /// Deletes the ticket projection and the number counters: Redis "lost"
    /// what intake keeps there.
    pub async fn wipe_projection(&self) {
        self.delete_keys(&["ticket:*", "ticket-number:*", "ticket-seq:*", "projection:*", "request:*"]).await;
    }

    /// Deletes this platform's keys matching the patterns; returns how many.
    async fn delete_keys(&self, patterns: &[&str]) -> usize {
        let client = redis::Client::open(self.redis.url.expose().as_str()).expect("redis");
        let mut c = client.get_multiplexed_async_connection().await.expect("redis connect");
        let mut deleted = 0;
        for pattern in patterns {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}{pattern}", self.prefix)).query_async(&mut c).await.expect("keys");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut c).await.expect("del");
            }
            deleted += keys.len();
        }
        deleted
    }

    /// Waits until the sla-timer has run a firing round at the clock's
    /// current time for the shard holding `ticket`: arms a probe timer due
    /// now in that shard and waits for its event on Kafka. Whatever of
    /// `ticket` was due by now was claimed in that same round.
    pub async fn firing_round_passed(&self, ticket: &str) {
        let store = self.timer_store().await;
        let shard = store.shard_of(&TicketId::parse(ticket).expect("ticket id"));
        let probe = loop {
            let t = TicketId::new();
            if store.shard_of(&t) == shard {
                break t;
            }
        };
        let now_ms = (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let record = whistle_sla_timer::Record {
            version: whistle_domain::EventId::new(),
            unit: whistle_domain::UnitCode::parse("probe").expect("unit"),
            deadline_ms: now_ms,
            traceparent: None,
        };
        let arm = whistle_sla_timer::Arm { kind: whistle_domain::TimerKind::FirstOverdue, due_ms: now_ms };
        store.arm(&probe, &record, &[arm], [false; 3]).await.expect("arm probe");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if !self.events_for(&probe.to_string()).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sla-timer ran no firing round within 60 s");
    }

    /// Publishes a domain event, as a desk or another service would.
    pub async fn publish_event(&self, e: &Event) {
        whistle_runtime::EventProducer::new(&self.kafka).expect("producer").publish(e).await.expect("publish event");
    }

    /// The timer store the sla-timer uses, for looking inside.
    pub async fn timer_store(&self) -> whistle_sla_timer::TimerStore<redis::aio::ConnectionManager> {
        let conn = whistle_runtime::redis_client::connect(&self.redis).await.expect("redis");
        whistle_sla_timer::TimerStore::new(conn, &self.prefix, whistle_sla_timer::TimerSettings::default().shards)
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

fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<Raw> {
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

/// The desk callers the test platform has tokens for.
pub const DESK_CALLERS: &[&str] = &[
    "city",
    "unit:city-water",
    "unit:city-ecology",
    "unit:city-heating",
    "unit:city-management",
    "unit:city-housing",
    "street:xc-xinjiekou",
    "street:xc-jinrongjie",
    "county:xicheng",
    "unit:xc-xinjiekou-office",
    "unit:xicheng-environment",
    "unit:xicheng-city-management",
];

/// The test token of a desk caller.
pub fn token_for(caller: &str) -> String {
    format!("test-token-{caller}")
}

/// A request with the usual fields filled.
pub fn request(text: &str, address: &str) -> pb::SubmitRequestRequest {
    pb::SubmitRequestRequest {
        channel: "phone".into(),
        external_id: String::new(),
        text: text.into(),
        address: address.into(),
        lat: None,
        lon: None,
        citizen_name: "张三".into(),
        citizen_phone: "13800138000".into(),
        citizen_email: String::new(),
        language: "zh".into(),
    }
}

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
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient};
use whistle_runtime::{KafkaConfig, RedisConfig, Shutdown, Topics};

pub use webhook::{Behaviour, WebhookReceiver};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo city, by its file in the repository.
pub fn city() -> whistle_runtime::config::CitySettings {
    whistle_runtime::config::CitySettings { file: city_file(), ..Default::default() }
}

pub fn city_file() -> PathBuf {
    repo_root().join("deploy/config/demo-city.toml")
}

/// The classifier's model, as shipped.
pub fn model_file() -> PathBuf {
    repo_root().join("services/classifier/model/whistle.model")
}

#[derive(Debug, Clone)]
pub struct Infra {
    pub brokers: String,
    pub redis_url: String,
    /// The SMTP server (aiosmtpd) and where it writes what it accepts.
    pub smtp: String,
    pub maildir: PathBuf,
}

fn port_open(addr: &str) -> bool {
    addr.parse::<SocketAddr>().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// The broker, Redis and the SMTP server, started by the project's script if they are down.
pub fn infra() -> &'static Infra {
    static INFRA: OnceLock<Infra> = OnceLock::new();
    INFRA.get_or_init(|| {
        let kafka_port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
        let redis_port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
        let brokers = format!("127.0.0.1:{kafka_port}");
        let redis = format!("127.0.0.1:{redis_port}");
        let smtp = format!("127.0.0.1:{}", std::env::var("SMTP_PORT").unwrap_or_else(|_| "2525".into()));
        if !port_open(&brokers) || !port_open(&redis) || !port_open(&smtp) {
            let status = std::process::Command::new("bash")
                .arg(repo_root().join("deploy/local/infra.sh"))
                .arg("start")
                .status()
                .expect("run deploy/local/infra.sh");
            assert!(status.success(), "deploy/local/infra.sh start failed");
        }
        // deploy/local/env.sh's default: shared by every checkout, like the port.
        let maildir = std::env::var("SMTP_MAILDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".whistle/smtp/mail"));
        init_logs();
        Infra { brokers, redis_url: format!("redis://{redis}/0"), smtp, maildir }
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
    /// The SMS gateway's behaviour.
    pub sms: Behaviour,
    /// Run the unit heads' monthly summary (looked at every 50 ms).
    pub summary: bool,
    pub revisit: whistle_domain::revisit::RevisitPolicy,
    /// Start only the revisit service (for tests that script the events).
    pub only_revisit: bool,
    /// Open311 POSTs a key may make a minute.
    pub open311_posts_per_minute: u32,
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
            sms: Behaviour::Accept,
            summary: false,
            revisit: whistle_domain::revisit::RevisitPolicy::default(),
            only_revisit: false,
            open311_posts_per_minute: 600,
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
    /// Intake's HTTP front: Open311 and the tracking page.
    pub intake_http: SocketAddr,
    pub desk_addr: SocketAddr,
    /// Desk address of every dispatcher instance, by platform.
    pub desks: HashMap<String, SocketAddr>,
    pub webhook: WebhookReceiver,
    /// The SMS gateway (a real HTTP receiver).
    pub sms: WebhookReceiver,
    pub revisit_addr: SocketAddr,
    pub revisit_http: SocketAddr,
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
        let sms = WebhookReceiver::start(options.sms.clone()).await;
        let clock = ManualClock::new(options.start);
        let mut p = Platform {
            prefix,
            kafka,
            redis,
            clock,
            intake_addr: ([127, 0, 0, 1], 0).into(),
            intake_http: ([127, 0, 0, 1], 0).into(),
            desk_addr: ([127, 0, 0, 1], 0).into(),
            desks: HashMap::new(),
            webhook,
            sms,
            revisit_addr: ([127, 0, 0, 1], 0).into(),
            revisit_http: ([127, 0, 0, 1], 0).into(),
            options,
            services: HashMap::new(),
        };
        if p.options.only_revisit {
            p.start_revisit().await;
            return p;
        }
        p.start_intake().await;
        p.start_classifier().await;
        p.start_dispatcher("city").await;
        for platform in p.options.platforms.clone() {
            p.start_dispatcher(platform).await;
        }
        p.start_sla_timer().await;
        p.start_notifier().await;
        p.start_revisit().await;
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
        let mut config = whistle_intake::Config {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            revisit: whistle_runtime::config::RevisitLink {
                link_secret: whistle_runtime::Secret::new(LINK_SECRET.into()),
                public_url: "http://revisit.test".into(),
            },
            ..Default::default()
        };
        config.intake.listen = ([127, 0, 0, 1], 0).into();
        config.intake.http_listen = ([127, 0, 0, 1], 0).into();
        config.city = city();
        config.open311.keys = vec![
            whistle_intake::open311::ApiKey {
                system: "tests".into(),
                channel: "app".into(),
                sha256: whistle_runtime::auth::hash_token(OPEN311_KEY),
                answer_with_token: false,
            },
            whistle_intake::open311::ApiKey {
                system: "batch-tests".into(),
                channel: "external".into(),
                sha256: whistle_runtime::auth::hash_token(OPEN311_TOKEN_KEY),
                answer_with_token: true,
            },
        ];
        config.open311.posts_per_minute = self.options.open311_posts_per_minute;
        let svc = whistle_intake::Intake::build_with_clock(config, self.clock_arc()).await.expect("build intake");
        self.intake_addr = svc.local_addr();
        self.intake_http = svc.http_addr();
        self.spawn("intake", |s| async move { svc.run(s).await.expect("intake") });
    }

    pub async fn start_classifier(&mut self) {
        let mut config =
            whistle_classifier::Config { kafka: self.kafka.clone(), redis: self.redis.clone(), city: city(), ..Default::default() };
        config.classifier.model = model_file();
        config.classifier.history_check_ms = 200;
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
        config.city = city();
        config.dispatcher.tokens = token_entries(DESK_CALLERS);
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
        self.start_notifier_named("notifier").await
    }

    /// Another notifier replica beside the first (they share the group).
    pub async fn start_notifier_named(&mut self, name: &'static str) {
        let mut config = whistle_notifier::Config {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            city: city(),
            revisit: whistle_notifier::RevisitLink {
                link_secret: whistle_runtime::Secret::new(LINK_SECRET.into()),
                public_url: "http://revisit.test".into(),
            },
            ..Default::default()
        };
        let n = &mut config.notifier;
        n.webhook_url = self.webhook.url();
        n.sms.url = self.sms.url();
        n.sms.auth_value = whistle_runtime::Secret::new("Bearer test-sms-key".into());
        n.sms.body_template = SMS_BODY.into();
        n.smtp.host = "127.0.0.1".into();
        n.smtp.port = infra().smtp.rsplit(':').next().and_then(|p| p.parse().ok()).expect("smtp port");
        n.max_attempts = self.options.notifier_attempts;
        n.initial_backoff_ms = 50;
        n.max_backoff_ms = 400;
        n.summary.enabled = self.options.summary;
        n.summary.poll_ms = 50;
        let svc = whistle_notifier::Notifier::build_with_clock(config, self.clock_arc()).await.expect("build notifier");
        self.spawn(name, |s| async move { svc.run(s).await.expect("notifier") });
    }

    pub async fn start_revisit(&mut self) {
        let mut config = whistle_revisit::Config {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            policy: self.options.policy.clone(),
            calendar: self.options.calendar.clone(),
            city: city(),
            ..Default::default()
        };
        let r = &mut config.revisit;
        r.listen = ([127, 0, 0, 1], 0).into();
        r.http_listen = ([127, 0, 0, 1], 0).into();
        r.rules = self.options.revisit.clone();
        r.link_secret = whistle_runtime::Secret::new(LINK_SECRET.into());
        r.sms_reply_token = Some(whistle_runtime::Secret::new(SMS_REPLY_TOKEN.into()));
        r.tokens = token_entries(REVISIT_CALLERS);
        let svc = whistle_revisit::Revisit::build_with_clock(config, self.clock_arc()).await.expect("build revisit");
        self.revisit_addr = svc.grpc_addr();
        self.revisit_http = svc.http_addr();
        self.spawn("revisit", |s| async move { svc.run(s).await.expect("revisit") });
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

    /// A revisit client holding the token of `caller` (`agent:<id>`, `city`).
    pub async fn revisit_as(&self, caller: &str) -> RevisitClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let channel = Channel::from_shared(format!("http://{}", self.revisit_addr)).expect("uri").connect().await.expect("connect revisit");
        RevisitClient::with_interceptor(channel, whistle_proto::Bearer::new(Some(&token_for(caller))).expect("token"))
    }

    /// Waits until the agent's revisit queue (due now, or all with `later`)
    /// lists the ticket; panics naming it after a minute.
    pub async fn wait_revisit_queued(&self, agent: &str, number: &str, later: bool) -> pb::RevisitTask {
        let mut client = self.revisit_as(agent).await;
        let start = Instant::now();
        loop {
            let tasks =
                client.list_due(pb::ListDueRequest { limit: 100, include_later: later }).await.expect("list due").into_inner().tasks;
            if let Some(t) = tasks.into_iter().find(|t| t.ticket_number == number) {
                return t;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "ticket {number} never appeared on {agent}'s revisit queue");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The citizen answers the revisit by SMS reply, as the gateway posts it.
    pub async fn sms_reply(&self, from: &str, text: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/sms/reply", self.revisit_http))
            .bearer_auth(SMS_REPLY_TOKEN)
            .json(&serde_json::json!({ "from": from, "text": text }))
            .send()
            .await
            .expect("post the SMS reply");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
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
            if found.len() >= n {
                return found;
            }
            assert!(start.elapsed() <= within, "{} of {n} dead letters within {within:?}", found.len());
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

    /// Waits until a ticket has exactly `n` outstanding timers; fails naming how many it has.
    pub async fn wait_timers(&self, ticket: &str, n: usize, within: Duration) {
        let start = Instant::now();
        loop {
            let have = self.timers_of(ticket).await;
            if have == n {
                return;
            }
            assert!(start.elapsed() <= within, "ticket {ticket} has {have} timers, not {n}, after {within:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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

    /// Waits until the ticket's waiting timers satisfy `pred`; fails naming what it saw.
    pub async fn wait_due(
        &self,
        ticket: &str,
        within: Duration,
        pred: impl Fn(&[(whistle_domain::TimerKind, time::OffsetDateTime)]) -> bool,
    ) -> Vec<(whistle_domain::TimerKind, time::OffsetDateTime)> {
        let start = Instant::now();
        loop {
            let due = self.due_of(ticket).await;
            if pred(&due) {
                return due;
            }
            assert!(start.elapsed() <= within, "timers of {ticket} within {within:?}: {due:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// Deletes the revisit queue: Redis "lost" what the revisit service keeps there.
    pub async fn wipe_revisits(&self) {
        let deleted = self.delete_keys(&["revisit:*"]).await;
        assert!(deleted > 0, "no revisit keys under {}revisit:*", self.prefix);
    }

    /// Deletes the classifier's repeat history: Redis "lost" it.
    pub async fn wipe_repeat_history(&self) {
        let deleted = self.delete_keys(&["repeat:*"]).await;
        assert!(deleted > 0, "no repeat history keys under {}repeat:*", self.prefix);
    }

    /// Waits until this platform's Redis holds `key` (without the prefix);
    /// panics naming it after `within`.
    pub async fn wait_key(&self, key: &str, within: Duration) {
        let client = redis::Client::open(self.redis.url.expose().as_str()).expect("redis");
        let mut c = client.get_multiplexed_async_connection().await.expect("redis connect");
        let start = Instant::now();
        while start.elapsed() < within {
            let n: i64 = redis::cmd("EXISTS").arg(format!("{}{key}", self.prefix)).query_async(&mut c).await.expect("exists");
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis key {}{key} did not appear within {within:?}", self.prefix);
    }

    /// Deletes the figures' daily tallies: Redis "lost" them.
    pub async fn wipe_figures(&self) {
        let deleted = self.delete_keys(&["figures:*"]).await;
        assert!(deleted > 0, "no figures keys under {}figures:*", self.prefix);
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

/// The revisit callers the test platform has tokens for.
pub const REVISIT_CALLERS: &[&str] = &["agent:wang", "agent:li", "city"];

/// The Open311 API keys of the test platform: answered with ids, and with tokens.
pub const OPEN311_KEY: &str = "test-open311-key";
pub const OPEN311_TOKEN_KEY: &str = "test-open311-token-key";

/// The key of the signed revisit links in tests.
pub const LINK_SECRET: &str = "test-revisit-link-secret-0123456789";
pub const SMS_REPLY_TOKEN: &str = "test-sms-reply-token";

/// What the test SMS gateway receives: the fields a test checks, as JSON.
pub const SMS_BODY: &str = r#"{"channel": "sms", "to": "{{to}}", "text": "{{text}}", "message_id": "{{message_id}}", "template": "{{template}}", "ticket_number": "{{ticket_number}}", "language": "{{language}}", "recipient": {"kind": "{{recipient_kind}}", "id": "{{recipient}}"}}"#;

/// One email the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub raw: String,
}

/// Every email the SMTP server accepted for `to`.
pub fn mails_to(to: &str) -> Vec<Mail> {
    mails_to_since(to, std::time::UNIX_EPOCH)
}

/// The emails the SMTP server accepted for `to` at or after `since`.
pub fn mails_to_since(to: &str, since: std::time::SystemTime) -> Vec<Mail> {
    let since_ns = since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = &infra().maildir;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                // Named <accepted at, ns>-<n>.eml by the server.
                .filter(|p| {
                    let stem = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('-').next()).unwrap_or("0");
                    stem.parse::<u128>().is_ok_and(|ns| ns >= since_ns)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|raw| {
            let (head, body) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n"))?;
            let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default();
            let envelope = header("X-Envelope-To:");
            if !envelope.split(", ").any(|r| r == to) {
                return None;
            }
            Some(Mail { to: envelope, subject: header("Subject:"), body: decode_body(head, body), raw: raw.clone() })
        })
        .collect()
}

/// The text of a single-part body (lettre picks quoted-printable or base64 for non-ASCII).
fn decode_body(head: &str, body: &str) -> String {
    let enc =
        head.lines().find_map(|l| l.strip_prefix("Content-Transfer-Encoding:")).map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
    match enc.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default()).into_owned()
        }
        "quoted-printable" => {
            String::from_utf8_lossy(&quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap_or_default()).into_owned()
        }
        _ => body.to_owned(),
    }
}

/// Waits until at least `n` emails reached `to`.
pub async fn wait_mails(to: &str, n: usize, within: Duration) -> Vec<Mail> {
    wait_mails_since(to, std::time::UNIX_EPOCH, n, within).await
}

/// Waits until at least `n` emails reached `to` at or after `since`.
pub async fn wait_mails_since(to: &str, since: std::time::SystemTime, n: usize, within: Duration) -> Vec<Mail> {
    let start = Instant::now();
    loop {
        let got = mails_to_since(to, since);
        if got.len() >= n {
            return got;
        }
        assert!(start.elapsed() <= within, "{} of {n} emails to {to} within {within:?}", got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configured (hashed) tokens of these callers.
fn token_entries(callers: &[&str]) -> Vec<whistle_runtime::auth::TokenEntry> {
    callers
        .iter()
        .map(|c| whistle_runtime::auth::TokenEntry { caller: (*c).to_owned(), sha256: whistle_runtime::auth::hash_token(&token_for(c)) })
        .collect()
}

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

//! The whole platform in-process: every service on port 0 with its own
//! topic, group and key prefixes, started, killed and stopped by name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Clock, DeadlinePolicy, ManualClock};
use whistle_runtime::{KafkaConfig, RedisConfig, Shutdown};

use crate::*;

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
    /// A Redis of the test's own instead of the shared one.
    pub redis_url: Option<String>,
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
            redis_url: None,
        }
    }
}

pub(crate) struct Running {
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
    /// The classifier's preview (gRPC).
    pub classifier_addr: SocketAddr,
    /// The console's HTTP address, once started.
    pub console: Option<SocketAddr>,
    /// Each service's metrics, health and readiness port, by service name
    /// (`dispatcher:<platform>` for a dispatcher).
    pub ops: HashMap<String, SocketAddr>,
    pub(crate) options: Options,
    pub(crate) services: HashMap<&'static str, Running>,
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
            // The lag metric, refreshed often enough for a test to watch.
            lag_interval_ms: 500,
            ..KafkaConfig::default()
        };
        whistle_runtime::topics::ensure(&kafka).await.expect("create topics");
        let redis = RedisConfig {
            url: whistle_runtime::Secret::new(options.redis_url.clone().unwrap_or_else(|| infra.redis_url.clone())),
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
            classifier_addr: ([127, 0, 0, 1], 0).into(),
            console: None,
            ops: HashMap::new(),
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

    pub(crate) fn clock_arc(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    pub(crate) fn spawn<F>(&mut self, name: &'static str, run: impl FnOnce(Shutdown) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(run(shutdown.clone()));
        self.services.insert(name, Running { shutdown, handle });
    }

    pub async fn start_intake(&mut self) {
        self.start_intake_named("intake").await;
    }

    /// One more intake replica (the same groups and Redis); the platform's
    /// intake address stays the first one's.
    pub async fn start_intake_named(&mut self, name: &'static str) {
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
        config.intake.ops_listen = ([127, 0, 0, 1], 0).into();
        config.intake.tokens = token_entries(DESK_CALLERS);
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
        if name == "intake" {
            self.intake_addr = svc.local_addr();
            self.intake_http = svc.http_addr();
        }
        self.ops.insert(name.into(), svc.ops_addr());
        self.spawn(name, |s| async move { svc.run(s).await.expect("intake") });
    }

    pub async fn start_classifier(&mut self) {
        let mut config =
            whistle_classifier::Config { kafka: self.kafka.clone(), redis: self.redis.clone(), city: city(), ..Default::default() };
        config.classifier.model = model_file();
        config.classifier.history_check_ms = 200;
        config.classifier.ops_listen = ([127, 0, 0, 1], 0).into();
        config.classifier.listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_classifier::Classifier::build_with_clock(config, self.clock_arc()).await.expect("build classifier");
        self.classifier_addr = svc.local_addr();
        self.ops.insert("classifier".into(), svc.ops_addr());
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
        config.dispatcher.ops_listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_dispatcher::Dispatcher::build_with_clock(config, self.clock_arc()).await.expect("build dispatcher");
        self.ops.insert(format!("dispatcher:{platform}"), svc.ops_addr());
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
        config.sla_timer.max_idle_ms = 20;
        config.sla_timer.ops_listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_sla_timer::SlaTimer::build_with_clock(config, self.clock_arc()).await.expect("build sla-timer");
        self.ops.insert("sla-timer".into(), svc.ops_addr());
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
        n.ops_listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_notifier::Notifier::build_with_clock(config, self.clock_arc()).await.expect("build notifier");
        self.ops.insert(name.into(), svc.ops_addr());
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
        r.ops_listen = ([127, 0, 0, 1], 0).into();
        let svc = whistle_revisit::Revisit::build_with_clock(config, self.clock_arc()).await.expect("build revisit");
        self.ops.insert("revisit".into(), svc.ops_addr());
        self.revisit_addr = svc.grpc_addr();
        self.revisit_http = svc.http_addr();
        self.spawn("revisit", |s| async move { svc.run(s).await.expect("revisit") });
    }

    /// The console, talking to every running desk and to revisit; returns
    /// its base URL.
    pub async fn start_console(&mut self) -> String {
        let mut config = whistle_console::Config { redis: self.redis.clone(), city: city(), ..Default::default() };
        let c = &mut config.console;
        c.http_listen = ([127, 0, 0, 1], 0).into();
        c.ops_listen = ([127, 0, 0, 1], 0).into();
        c.desks = self.desks.iter().map(|(p, a)| (p.clone(), format!("http://{a}"))).collect();
        c.revisit = format!("http://{}", self.revisit_addr);
        c.intake = format!("http://{}", self.intake_addr);
        c.classifier = format!("http://{}", self.classifier_addr);
        let svc = whistle_console::Console::build_with_clock(config, self.clock_arc()).await.expect("build console");
        self.ops.insert("console".into(), svc.ops_addr());
        let addr = svc.local_addr();
        self.console = Some(addr);
        self.spawn("console", |s| async move { svc.run(s).await.expect("console") });
        format!("http://{addr}")
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
}

//! Notifier: turns ticket events into messages — the citizen's ticket
//! number, result and revisit question; the unit's new ticket, rework,
//! reminder and urging letter; the leader's urging letters and supervised
//! items; the unit heads' monthly summary — in the recipient's language, and
//! delivers them by SMS (HTTP gateway), email (SMTP) and webhook.
//!
//! Delivery is exactly-once in effect: each (message, channel) is marked
//! delivered in Redis and skipped when seen again; each try is retried with
//! backoff and jitter and rate-limited per gateway. When a shared gateway
//! (SMS, SMTP, the default webhook) is down, the message waits (the
//! partition is retried, nothing is lost); a message a gateway refuses, or
//! that a unit's own webhook never takes, is dead-lettered with the reason
//! after the last try.

pub mod channels;
mod delivery;
mod directory;
mod handler;
pub mod i18n;
pub mod messages;
pub mod summary;

pub use delivery::{Deliverer, Undelivered};
pub use directory::{Directory, Route};
use handler::Notify;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Category, Clock, SystemClock};
use whistle_runtime::consumer::{self, ConsumerSettings};
use whistle_runtime::ops::OpsServer;
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

use channels::{Sms, SmsSettings, Smtp, SmtpSettings, Webhook};
pub use channels::{SmtpTls, Trust};
pub use messages::{Message, Recipient, Template};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// The city file (units' and leaders' webhooks, mailboxes, heads) and its time.
    pub city: whistle_runtime::config::CitySettings,
    pub notifier: NotifierSettings,
    /// The revisit link's key and public address (`[revisit]`, shared with the revisit service).
    pub revisit: RevisitLink,
    pub deployment: whistle_runtime::config::Deployment,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["notifier"];

    fn check(&self) -> whistle_runtime::Result<()> {
        use whistle_runtime::config::in_range;
        let n = &self.notifier;
        self.city.offset()?;
        in_range("notifier.max_attempts", n.max_attempts, 1..)?;
        in_range("notifier.webhook_per_second", n.webhook_per_second, f64::MIN_POSITIVE..)?;
        in_range("notifier.initial_backoff_ms", n.initial_backoff_ms, 1..=n.max_backoff_ms)
    }
}

pub use whistle_runtime::config::RevisitLink;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifierSettings {
    pub group: String,
    /// Where unit, leader and desk messages are POSTed unless the city file
    /// gives the recipient its own webhook.
    pub webhook_url: String,
    pub webhook_per_second: f64,
    pub sms: SmsSettings,
    pub smtp: SmtpSettings,
    /// Categories whose units see the citizen's phone in clear (they must
    /// call or visit); other units see it masked.
    pub contact_categories: Vec<Category>,
    /// Tries per message and channel before giving up on this round.
    pub max_attempts: u32,
    /// First retry delay; doubles each try (with jitter) up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub request_timeout_ms: u64,
    pub summary: summary::SummarySettings,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub ops_listen: std::net::SocketAddr,
    /// A PEM file of a CA to trust, besides the bundled roots, for HTTPS
    /// webhooks, the SMS gateway and SMTP over TLS (a city's own CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        NotifierSettings {
            group: "notifier".into(),
            webhook_url: "http://127.0.0.1:8025/messages".into(),
            webhook_per_second: 200.0,
            sms: SmsSettings::default(),
            smtp: SmtpSettings::default(),
            contact_categories: vec![Category::Heating, Category::Property, Category::Housing],
            max_attempts: 8,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            request_timeout_ms: 10_000,
            summary: summary::SummarySettings::default(),
            ops_listen: ([127, 0, 0, 1], 9185).into(),
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("message catalog: {0}")]
    Catalog(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Notifier {
    config: Config,
    handler: Arc<Notify>,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    ops: OpsServer,
}

impl Notifier {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        config.deployment.require_secret("revisit.link_secret", Some(&config.revisit.link_secret))?;
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let directory = Directory::from_city(&config.city.load()?)?;
        let offset = config.city.offset()?;
        let catalog = i18n::Catalog::builtin()?;
        catalog.require(&Template::ALL.map(Template::message_id))?;
        let timeout = Duration::from_millis(config.notifier.request_timeout_ms);
        let trust = Trust::load(config.notifier.ca_file.as_deref())?;
        let store = TicketStore::connect(&config.redis).await?;
        let ops = OpsServer::for_service("notifier", config.notifier.ops_listen, store.redis(), &producer).await?;
        let deliverer = Deliverer {
            store,
            webhook: Webhook::new(timeout, config.notifier.webhook_per_second, &trust)?,
            sms: Sms::new(&config.notifier.sms, timeout, &trust)?,
            smtp: Smtp::new(&config.notifier.smtp, timeout, &trust)?,
            directory,
            settings: config.notifier.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            shutdown: Shutdown::new(),
            tries: delivery::Tries::registered(ops.ops()),
        };
        let handler =
            Arc::new(Notify { deliverer: Arc::new(deliverer), catalog: Arc::new(catalog), revisit: config.revisit.clone(), offset });
        Ok(Notifier { config, handler, producer, clock, ops })
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> std::net::SocketAddr {
        self.ops.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let retries = self.handler.deliverer.shutdown.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.wait().await;
            retries.trigger();
        });
        let topics = Topics::new(&self.config.kafka);
        let mut settings = ConsumerSettings::new(self.ops.ops(), self.config.notifier.group.clone(), vec![topics.events()]);
        settings.max_batch = 64;
        let mut tasks = Vec::new();
        if self.config.notifier.summary.enabled {
            let monthly = summary::Monthly::new(
                self.handler.deliverer.clone(),
                self.handler.catalog.clone(),
                self.config.kafka.clone(),
                self.handler.offset,
                self.config.notifier.summary.clone(),
                self.clock.clone(),
            );
            tasks.push(spawn_supervised("monthly-summary", &shutdown, monthly.run(shutdown.clone())));
        }
        let notify = consumer::spawn("notify", &self.config.kafka, settings, self.handler, self.producer.clone(), &shutdown);
        let ops = self.ops.spawn(&shutdown);
        shutdown.wait().await;
        // Both drain within one deadline.
        let deadline = Duration::from_secs(15);
        tokio::join!(drain(vec![notify, ops], deadline), drain(tasks, deadline));
        self.producer.flush(Duration::from_secs(5));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_local_config_has_every_channel() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/whistle.toml");
        let config: Config = whistle_runtime::config::load_service(Some(&file)).unwrap();
        let n = &config.notifier;
        assert!(Sms::new(&n.sms, Duration::from_secs(1), &Trust::default()).unwrap().is_some(), "SMS body template fills in as JSON");
        assert!(Smtp::new(&n.smtp, Duration::from_secs(1), &Trust::default()).unwrap().is_some());
        assert_eq!(n.contact_categories, [Category::Heating, Category::Property, Category::Housing]);
        assert!(n.summary.enabled && n.summary.day == 1 && n.summary.hour == 9);
        assert_eq!(config.revisit.public_url, "http://127.0.0.1:8026");
        let city = whistle_runtime::city::load(&file.parent().unwrap().join("..").join("..").join(&config.city.file)).unwrap();
        let d = Directory::from_city(&city).unwrap();
        assert!(d.heads.len() > 100, "the demo city's unit heads");
        assert_eq!(format!("{:?}", n.sms.auth_value), "<redacted>", "the gateway key never prints");
    }

    #[test]
    fn each_recipient_goes_out_on_its_channels() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/demo-city.toml");
        let d = Directory::from_city(&whistle_runtime::city::load(&file).unwrap()).unwrap();
        let to = |recipient: Recipient, citizen: Option<messages::CitizenContact>| {
            d.routes(&Message { recipient, citizen, ..Message::probe() }, "http://hook", true, true)
        };
        let shared = || Route::Webhook { url: "http://hook".into(), shared: true };
        let citizen = messages::CitizenContact { phone: Some("13800138000".into()), email: Some("a@b.example".into()) };
        assert_eq!(to(Recipient::Citizen, Some(citizen)), [Route::Sms("13800138000".into()), Route::Email("a@b.example".into())]);
        assert_eq!(to(Recipient::Citizen, None), [], "anonymous");
        assert_eq!(
            to(Recipient::Unit { unit: "city-water".into() }, None),
            [shared(), Route::Email("city-water@units.demo-city.example".into())]
        );
        assert_eq!(to(Recipient::Leader { leader: "city-deputy-mayor".into() }, None), [shared(), Route::Sms("13901000001".into())]);
        assert_eq!(to(Recipient::Desk { platform: "city".into() }, None), [shared()]);
        assert_eq!(
            to(Recipient::UnitHead { unit: "city-water".into() }, None),
            [Route::Sms("13900000002".into()), Route::Email("head.city-water@units.demo-city.example".into())]
        );
        assert_eq!(to(Recipient::UnitHead { unit: "xc-xinjiekou-community-1".into() }, None), [], "communities have no head");
        // Without an SMS gateway or SMTP the citizen has no channel; officials keep the webhook.
        let m = Message { recipient: Recipient::Leader { leader: "city-deputy-mayor".into() }, ..Message::probe() };
        assert_eq!(d.routes(&m, "http://hook", false, false), [shared()]);
    }
}

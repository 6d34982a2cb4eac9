//! Notifier: turns ticket events into messages (the citizen's ticket number
//! and result, the unit's new ticket and overdue reminders) and delivers them
//! through the webhook channel: HTTP POST of a JSON message, retried with
//! backoff and jitter, de-duplicated by (event, recipient, channel), and
//! dead-lettered with the reason when every try failed.

pub mod messages;
mod webhook;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

pub use messages::{Message, Recipient, Template};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub notifier: NotifierSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifierSettings {
    pub group: String,
    /// Where unit messages are POSTed unless the unit has its own webhook.
    pub webhook_url: String,
    /// Where citizen messages are POSTed (the SMS/email gateway's HTTP API).
    pub citizen_webhook_url: String,
    /// The city file, for per-unit webhooks.
    pub city_file: Option<PathBuf>,
    /// Tries per message before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each try (with jitter) up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub request_timeout_ms: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        NotifierSettings {
            group: "notifier".into(),
            webhook_url: "http://127.0.0.1:8025/messages".into(),
            citizen_webhook_url: "http://127.0.0.1:8025/messages".into(),
            city_file: Some("deploy/config/demo-city.toml".into()),
            max_attempts: 8,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            request_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a delivered message is remembered for de-duplication.
const DELIVERED_TTL_SECONDS: u64 = 30 * 24 * 3600;

pub struct Notifier {
    config: Config,
    handler: Arc<Notify>,
    producer: EventProducer,
}

impl Notifier {
    pub async fn build(config: Config) -> Result<Self> {
        if config.kafka.create_topics {
            whistle_runtime::topics::ensure(&config.kafka).await?;
        }
        let mut unit_hooks = BTreeMap::new();
        let mut leaders = BTreeMap::new();
        if let Some(file) = &config.notifier.city_file {
            let city = whistle_runtime::city::load(file)?;
            for u in &city.config.units {
                if let Some(hook) = &u.webhook {
                    unit_hooks.insert(format!("unit:{}", u.code), hook.clone());
                }
            }
            for l in &city.config.leaders {
                leaders.insert(l.platform.clone(), l.code.clone());
                if let Some(hook) = &l.webhook {
                    unit_hooks.insert(format!("leader:{}", l.code), hook.clone());
                }
            }
        }
        let producer = EventProducer::new(&config.kafka)?;
        let store = TicketStore::connect(&config.redis).await?;
        let client = webhook::Client::new(&config.notifier)?;
        let handler = Arc::new(Notify { store, client, unit_hooks, leaders, settings: config.notifier.clone() });
        Ok(Notifier { config, handler, producer })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let topics = Topics::new(&self.config.kafka);
        let mut settings = ConsumerSettings::new("notifier", self.config.notifier.group.clone(), vec![topics.events()]);
        settings.max_batch = 64;
        let r = consumer::run(self.config.kafka.clone(), settings, self.handler, self.producer.clone(), shutdown).await;
        self.producer.flush(Duration::from_secs(5));
        Ok(r?)
    }
}

struct Notify {
    store: TicketStore,
    client: webhook::Client,
    /// Recipient id (`unit:<code>`, `leader:<code>`) -> its own webhook.
    unit_hooks: BTreeMap<String, String>,
    /// Platform -> the code of its leader in charge.
    leaders: BTreeMap<whistle_domain::PlatformId, String>,
    settings: NotifierSettings,
}

impl Notify {
    fn url_for(&self, r: &Recipient) -> &str {
        match r {
            Recipient::Citizen { .. } => &self.settings.citizen_webhook_url,
            Recipient::Unit { .. } | Recipient::Leader { .. } | Recipient::Desk { .. } => {
                self.unit_hooks.get(&r.id()).map_or(&self.settings.webhook_url, String::as_str)
            }
        }
    }

    fn delivered_key(&self, m: &Message) -> String {
        format!("{}notified:{}:{}:webhook", self.store.prefix(), m.event_id, m.recipient.id())
    }
}

impl Handler for Notify {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let projection =
            if messages::needs_ticket(&event) { Some(self.store.projection_at(&event.ticket_id, msg.offset).await?) } else { None };
        let mut redis = self.store.redis();
        for m in messages::for_event(&event, projection.as_ref().map(|p| &p.ticket), |p| self.leaders.get(p).cloned()) {
            let key = self.delivered_key(&m);
            let seen: bool = redis.exists(&key).await.map_err(|e| HandleError::Retry(e.to_string()))?;
            if seen {
                tracing::debug!(message = %m.message_id, "already delivered");
                continue;
            }
            let url = self.url_for(&m.recipient);
            match self.client.deliver(url, &m).await {
                Ok(attempts) => {
                    let _: () = redis.set_ex(&key, 1, DELIVERED_TTL_SECONDS).await.map_err(|e| HandleError::Retry(e.to_string()))?;
                    tracing::info!(ticket = %m.ticket_id, template = m.template.as_str(), recipient = %m.recipient.id(), attempts, "message delivered");
                }
                Err(reason) => {
                    return Err(HandleError::Poison(format!(
                        "message {} ({}) to {} could not be delivered to {url}: {reason}",
                        m.message_id,
                        m.template.as_str(),
                        m.recipient.id()
                    )));
                }
            }
        }
        Ok(())
    }
}

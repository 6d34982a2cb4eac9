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
pub mod i18n;
pub mod messages;
pub mod summary;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Category, Clock, Language, PlatformId, SystemClock, TicketId};
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::retry::{GaveUp, Retry};
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

use channels::{Failure, Sms, SmsSettings, Smtp, SmtpSettings, Webhook};
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

/// How long a replica's claim to send a message lasts (it outlives every try).
const CLAIM_MS: u64 = 120_000;

/// How long a delivered message is remembered for de-duplication.
const DELIVERED_TTL_SECONDS: u64 = 90 * 24 * 3600;

/// Where one message goes on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Sms(String),
    Email(String),
    Webhook {
        url: String,
        /// The platform's default webhook (waits out outages) or a
        /// recipient's own (dead-lettered after the last try).
        shared: bool,
    },
}

impl Route {
    pub fn channel(&self) -> &'static str {
        match self {
            Route::Sms(_) => "sms",
            Route::Email(_) => "email",
            Route::Webhook { .. } => "webhook",
        }
    }

    /// Does a transient failure mean the whole gateway is down (wait), not
    /// this recipient (dead-letter)?
    fn shared(&self) -> bool {
        match self {
            Route::Sms(_) | Route::Email(_) => true,
            Route::Webhook { shared, .. } => *shared,
        }
    }
}

/// Officials' addresses from the city file (never logged).
#[derive(Default)]
pub struct Directory {
    webhooks: BTreeMap<String, String>,
    emails: BTreeMap<String, String>,
    phones: BTreeMap<String, String>,
    languages: BTreeMap<String, Language>,
    leaders: BTreeMap<PlatformId, String>,
    /// Unit code -> name, for summaries.
    pub unit_names: BTreeMap<String, String>,
    /// Units with a head, and the head's recipient id.
    pub heads: Vec<(whistle_domain::UnitCode, String)>,
}

impl Directory {
    pub fn from_city(city: &whistle_domain::city::City) -> Result<Self> {
        let mut d = Directory::default();
        for u in &city.config.units {
            let id = format!("unit:{}", u.code);
            d.unit_names.insert(u.code.to_string(), u.name.clone());
            if let Some(w) = &u.webhook {
                d.webhooks.insert(id.clone(), w.clone());
            }
            if let Some(e) = &u.email {
                d.emails.insert(id, e.clone());
            }
            if let Some(h) = &u.head {
                let hid = format!("unit-head:{}", u.code);
                if let Some(p) = &h.phone {
                    d.phones.insert(hid.clone(), p.clone());
                }
                if let Some(e) = &h.email {
                    d.emails.insert(hid.clone(), e.clone());
                }
                if let Some(l) = &h.language {
                    let lang = Language::parse(l).map_err(|e| Error::Config(format!("city file: unit {} head: {e}", u.code)))?;
                    d.languages.insert(hid.clone(), lang);
                }
                d.heads.push((u.code.clone(), hid));
            }
        }
        for l in &city.config.leaders {
            let id = format!("leader:{}", l.code);
            d.leaders.insert(l.platform.clone(), l.code.clone());
            if let Some(w) = &l.webhook {
                d.webhooks.insert(id.clone(), w.clone());
            }
            if let Some(p) = &l.phone {
                d.phones.insert(id.clone(), p.clone());
            }
            if let Some(e) = &l.email {
                d.emails.insert(id, e.clone());
            }
        }
        Ok(d)
    }

    /// The channels a message goes out on: the citizen's phone and mailbox
    /// from the ticket; officials' webhook (their own, or the default one),
    /// phone and mailbox from the city file; unit heads by SMS and email.
    pub fn routes(&self, m: &Message, default_webhook: &str, sms: bool, email: bool) -> Vec<Route> {
        let id = m.recipient.id();
        let sms_to = |phone: &str| sms.then(|| Route::Sms(phone.to_owned()));
        let email_to = |addr: &str| email.then(|| Route::Email(addr.to_owned()));
        let mut out = Vec::new();
        match &m.recipient {
            Recipient::Citizen => {
                if let Some(c) = &m.citizen {
                    out.extend(c.phone.as_deref().and_then(sms_to));
                    out.extend(c.email.as_deref().and_then(email_to));
                }
                return out;
            }
            Recipient::Unit { .. } | Recipient::Leader { .. } | Recipient::Desk { .. } => out.push(match self.webhooks.get(&id) {
                Some(url) => Route::Webhook { url: url.clone(), shared: false },
                None => Route::Webhook { url: default_webhook.to_owned(), shared: true },
            }),
            Recipient::UnitHead { .. } => {}
        }
        out.extend(self.phones.get(&id).and_then(|p| sms_to(p)));
        out.extend(self.emails.get(&id).and_then(|e| email_to(e)));
        out
    }

    pub fn leader_of(&self, p: &PlatformId) -> Option<String> {
        self.leaders.get(p).cloned()
    }

    pub fn language_of(&self, r: &Recipient) -> Language {
        self.languages.get(&r.id()).copied().unwrap_or(Language::Zh)
    }
}

/// Everything delivering needs, shared by the event consumer and the
/// monthly summary.
pub struct Deliverer {
    store: TicketStore,
    webhook: Webhook,
    sms: Option<Sms>,
    smtp: Option<Smtp>,
    directory: Directory,
    settings: NotifierSettings,
    /// This replica, in its claims.
    instance: String,
    /// Fired when the service stops: no retry waits through it.
    shutdown: Shutdown,
}

/// Why a message could not be delivered this round.
#[derive(Debug)]
pub enum Undelivered {
    /// A shared gateway is down: try the message again later.
    Wait(String),
    /// Refused, or a recipient's own endpoint never answered: dead-letter.
    Give(String),
}

impl Deliverer {
    /// The channels a message goes out on.
    pub fn routes(&self, m: &Message) -> Vec<Route> {
        self.directory.routes(m, &self.settings.webhook_url, self.sms.is_some(), self.smtp.is_some())
    }

    fn delivered_key(&self, m: &Message, route: &Route) -> String {
        format!("{}notified:{}:{}", self.store.prefix(), m.message_id, route.channel())
    }

    async fn try_once(&self, route: &Route, m: &Message) -> Result<(), Failure> {
        match route {
            Route::Webhook { url, .. } => self.webhook.send(url, m).await,
            Route::Sms(to) => match &self.sms {
                Some(sms) => sms.send(to, m).await,
                None => Err(Failure::Permanent("SMS is not configured".into())),
            },
            Route::Email(to) => match &self.smtp {
                Some(smtp) => smtp.send(to, m).await,
                None => Err(Failure::Permanent("SMTP is not configured".into())),
            },
        }
    }

    /// Delivers a message on every channel it has not been delivered on yet.
    pub async fn deliver(&self, m: &Message) -> Result<(), Undelivered> {
        let mut redis = self.store.redis();
        let routes = self.routes(m);
        if routes.is_empty() {
            tracing::debug!(message = %m.message_id, recipient = %m.recipient.id(), "no channel reaches this recipient");
        }
        let redis_err = |e: redis::RedisError| Undelivered::Wait(format!("redis: {e}"));
        for route in routes {
            let key = self.delivered_key(m, &route);
            let seen: bool = redis.exists(&key).await.map_err(redis_err)?;
            if seen {
                tracing::debug!(message = %m.message_id, channel = route.channel(), "already delivered");
                continue;
            }
            // One sender at a time per (message, channel), whichever replica:
            // the claim lapses if its holder dies before marking it.
            let claim = format!("{key}:sending");
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&claim)
                .arg(&self.instance)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_MS)
                .query_async(&mut redis)
                .await
                .map_err(redis_err)?;
            if claimed.is_none() {
                return Err(Undelivered::Wait(format!(
                    "message {} by {} is being sent by another notifier",
                    m.message_id,
                    route.channel()
                )));
            }
            if redis.exists::<_, bool>(&key).await.map_err(redis_err)? {
                let _: () = redis.del(&claim).await.map_err(redis_err)?;
                continue;
            }
            let retry =
                Retry::new(Duration::from_millis(self.settings.initial_backoff_ms), Duration::from_millis(self.settings.max_backoff_ms))
                    .limited(self.settings.max_attempts);
            let tries = std::sync::atomic::AtomicU32::new(0);
            let sent = retry
                .run(
                    &self.shutdown,
                    |n| {
                        tries.store(n, std::sync::atomic::Ordering::Relaxed);
                        self.try_once(&route, m)
                    },
                    |f| matches!(f, Failure::Permanent(_)),
                    |attempt, f, wait| {
                        tracing::warn!(message = %m.message_id, channel = route.channel(), attempt, wait_ms = wait.as_millis() as u64, error = %f, "delivery failed; retrying");
                    },
                )
                .await;
            let failure = match sent {
                Ok(()) => None,
                Err(GaveUp::Failed { error, .. }) => Some(error),
                // Stopping: the claim lapses and the message is sent after the restart.
                Err(GaveUp::ShuttingDown(_)) => {
                    return Err(Undelivered::Wait(format!("message {} by {}: the notifier is stopping", m.message_id, route.channel())));
                }
            };
            let attempt = tries.load(std::sync::atomic::Ordering::Relaxed);
            match failure {
                None => {
                    let _: () = redis::pipe()
                        .atomic()
                        .set_ex(&key, 1, DELIVERED_TTL_SECONDS)
                        .del(&claim)
                        .query_async(&mut redis)
                        .await
                        .map_err(redis_err)?;
                    tracing::info!(ticket = %m.ticket_number, template = m.template.as_str(), recipient = %m.recipient.id(), channel = route.channel(), attempt, "message delivered");
                }
                Some(f) => {
                    let _: () = redis.del(&claim).await.map_err(redis_err)?;
                    let reason = format!(
                        "message {} ({}) to {} by {}: {f} after {attempt} tries",
                        m.message_id,
                        m.template.as_str(),
                        m.recipient.id(),
                        route.channel()
                    );
                    return Err(match f {
                        Failure::Transient(_) if route.shared() => Undelivered::Wait(reason),
                        Failure::Transient(_) | Failure::Permanent(_) => Undelivered::Give(reason),
                    });
                }
            }
        }
        Ok(())
    }
}

pub struct Notifier {
    config: Config,
    handler: Arc<Notify>,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
}

impl Notifier {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        config.deployment.require_secret("revisit.link_secret", Some(&config.revisit.link_secret))?;
        whistle_runtime::topics::prepare(&config.kafka).await?;
        let directory = Directory::from_city(&config.city.load()?)?;
        let offset = config.city.offset()?;
        let catalog = i18n::Catalog::builtin()?;
        catalog.require(&Template::ALL.map(Template::message_id))?;
        let timeout = Duration::from_millis(config.notifier.request_timeout_ms);
        let deliverer = Deliverer {
            store: TicketStore::connect(&config.redis).await?,
            webhook: Webhook::new(timeout, config.notifier.webhook_per_second)?,
            sms: Sms::new(&config.notifier.sms, timeout)?,
            smtp: Smtp::new(&config.notifier.smtp, timeout)?,
            directory,
            settings: config.notifier.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            shutdown: Shutdown::new(),
        };
        let producer = EventProducer::new(&config.kafka)?;
        let handler =
            Arc::new(Notify { deliverer: Arc::new(deliverer), catalog: Arc::new(catalog), revisit: config.revisit.clone(), offset });
        Ok(Notifier { config, handler, producer, clock })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let retries = self.handler.deliverer.shutdown.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.wait().await;
            retries.trigger();
        });
        let topics = Topics::new(&self.config.kafka);
        let mut settings = ConsumerSettings::new("notifier", self.config.notifier.group.clone(), vec![topics.events()]);
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
        let r = consumer::run(self.config.kafka.clone(), settings, self.handler, self.producer.clone(), shutdown.clone()).await;
        shutdown.trigger();
        drain(tasks, Duration::from_secs(10)).await;
        self.producer.flush(Duration::from_secs(5));
        Ok(r?)
    }
}

struct Notify {
    deliverer: Arc<Deliverer>,
    catalog: Arc<i18n::Catalog>,
    revisit: RevisitLink,
    offset: time::UtcOffset,
}

impl Handler for Notify {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let d = &self.deliverer;
        let projection =
            if messages::needs_ticket(&event) { Some(d.store.projection_at(&event.ticket_id, msg.offset).await?) } else { None };
        let messages = {
            let link = |t: &TicketId| self.revisit.url(t);
            let ctx = messages::Context {
                catalog: &self.catalog,
                leader_of: &|p| d.directory.leader_of(p),
                language_of: &|r| d.directory.language_of(r),
                contact_categories: &d.settings.contact_categories,
                revisit_link: &link,
                offset: self.offset,
            };
            messages::for_event(&event, projection.as_ref().map(|p| &p.ticket), &ctx)
        };
        // A refused message does not hold back the others of the event; the
        // dead letter names every one that failed (a replay sends only those:
        // the delivered ones are marked).
        let mut refused = Vec::new();
        for m in messages {
            match d.deliver(&m).await {
                Ok(()) => {}
                Err(Undelivered::Wait(reason)) => return Err(HandleError::Retry(reason)),
                Err(Undelivered::Give(reason)) => refused.push(reason),
            }
        }
        if refused.is_empty() { Ok(()) } else { Err(HandleError::Poison(refused.join("; "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_local_config_has_every_channel() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/whistle.toml");
        let config: Config = whistle_runtime::config::load_checked(Some(&file), &["notifier"]).unwrap();
        let n = &config.notifier;
        assert!(Sms::new(&n.sms, Duration::from_secs(1)).unwrap().is_some(), "SMS body template fills in as JSON");
        assert!(Smtp::new(&n.smtp, Duration::from_secs(1)).unwrap().is_some());
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

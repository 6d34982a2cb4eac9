//! Delivering one message on each of its routes: a claim so one replica
//! sends it, retries under one policy, the delivered mark that de-duplicates.

use crate::channels::{Failure, Sms, Smtp, Webhook};
use crate::directory::{Directory, Route};
use crate::messages::Message;
use crate::{NotifierSettings, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use redis::AsyncCommands;
use std::time::Duration;
use whistle_runtime::retry::{GaveUp, Retry};
use whistle_runtime::{Shutdown, TicketStore};

/// How long a replica's claim to send a message lasts (it outlives every try).
const CLAIM_MS: u64 = 120_000;

/// How long a delivered message is remembered for de-duplication.
const DELIVERED_TTL_SECONDS: u64 = 90 * 24 * 3600;

/// Everything delivering needs, shared by the event consumer and the
/// monthly summary.
pub struct Deliverer {
    pub(crate) store: TicketStore,
    pub(crate) webhook: Webhook,
    pub(crate) sms: Option<Sms>,
    pub(crate) smtp: Option<Smtp>,
    pub(crate) directory: Directory,
    pub(crate) settings: NotifierSettings,
    /// This replica, in its claims.
    pub(crate) instance: String,
    /// Fired when the service stops: no retry waits through it.
    pub(crate) shutdown: Shutdown,
    pub(crate) tries: Tries,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TryLabels {
    channel: &'static str,
    outcome: &'static str,
}

/// Every try to send a message, by channel and outcome (`delivered`,
/// `failed`), as the metric `whistle_messages_total`.
#[derive(Clone, Default)]
pub(crate) struct Tries(Family<TryLabels, Counter>);

impl Tries {
    pub(crate) fn registered(ops: &whistle_runtime::Ops) -> Tries {
        let tries = Tries::default();
        ops.register("whistle_messages", "Tries to send a message, by channel and outcome (delivered, failed)", tries.0.clone());
        tries
    }

    fn count(&self, channel: &'static str, ok: bool) {
        self.0.get_or_create(&TryLabels { channel, outcome: if ok { "delivered" } else { "failed" } }).inc();
    }
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
        let sent = self.send_once(route, m).await;
        self.tries.count(route.channel(), sent.is_ok());
        sent
    }

    async fn send_once(&self, route: &Route, m: &Message) -> Result<(), Failure> {
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
                // Stopping: let the claim go, so whichever replica takes the
                // partition sends it at once.
                Err(GaveUp::ShuttingDown(_)) => {
                    let _: () = redis.del(&claim).await.map_err(redis_err)?;
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

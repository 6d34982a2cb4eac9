//! Registering a request: idempotency on (channel, external id), the ticket
//! number, and the `received` event, acknowledged by the broker before the
//! number is handed out.

use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, Request, RequestFields, TicketId, TicketNumber};
use whistle_runtime::consumer::{HandleError, Handler, Incoming};
use whistle_runtime::{EventProducer, TicketStore};

/// How long a claim on (channel, external id) lives if its holder dies before
/// the event is durable.
const CLAIM_SECONDS: u64 = 60;

/// How long a call waits for a lost ticket projection to be rebuilt before
/// it is told to retry (the citizen is on the line).
const NUMBERS_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub ticket_id: TicketId,
    pub number: TicketNumber,
    /// The same (channel, external id) was registered before.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the same request is being registered right now; retry shortly")]
    Busy,
    #[error("the request could not be recorded durably, nothing was registered; retry: {0}")]
    Unavailable(String),
}

/// Turns validated requests into tickets. Cheap to clone.
#[derive(Clone)]
pub struct Registrar {
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    offset: time::UtcOffset,
}

impl Registrar {
    pub fn new(store: TicketStore, producer: EventProducer, clock: Arc<dyn Clock>, offset: time::UtcOffset) -> Self {
        Registrar { store, producer, clock, offset }
    }

    fn dedupe_key(&self, request: &Request, external_id: &str) -> String {
        self.request_key(request.channel.as_str(), external_id)
    }

    fn request_key(&self, channel: &str, external_id: &str) -> String {
        self.store.request_key(channel, external_id)
    }

    /// The ticket registered for (channel, external id), once durable.
    pub async fn lookup(&self, channel: &str, external_id: &str) -> Result<Option<TicketId>, RegisterError> {
        let seen: Option<String> = self
            .store
            .redis()
            .get(self.request_key(channel, external_id.trim()))
            .await
            .map_err(|e| RegisterError::Unavailable(e.to_string()))?;
        Ok(seen.as_deref().and_then(parse_claim).and_then(|(done, id, _)| done.then_some(id)))
    }

    async fn allocate(&self) -> Result<(TicketId, TicketNumber), RegisterError> {
        let date = self.clock.now().to_offset(self.offset).date();
        let day = TicketNumber::new(date, 0);
        let unavailable = |e: whistle_runtime::Error| RegisterError::Unavailable(e.to_string());
        loop {
            // While Redis has lost the counters (the projection is being
            // rebuilt), no number: it could be one already issued.
            match self.store.next_number(day.day()).await.map_err(unavailable)? {
                Some(seq) => return Ok((TicketId::new(), TicketNumber::new(date, seq))),
                None => self.store.wait_alive(NUMBERS_WAIT).await.map_err(unavailable)?,
            }
        }
    }

    /// The days whose numbers may be in flight now (today and yesterday,
    /// city time), as `YYYYMMDD`: a rebuild makes their counters skip ahead.
    pub fn days_in_flight(&self) -> Vec<String> {
        let today = self.clock.now().to_offset(self.offset).date();
        [today.previous_day(), Some(today)].into_iter().flatten().map(|d| TicketNumber::new(d, 0).day().to_owned()).collect()
    }

    /// Registers a request; returns once its `received` event is durable.
    pub async fn register(&self, request: Request) -> Result<Registered, RegisterError> {
        let unavailable = |e: redis::RedisError| RegisterError::Unavailable(e.to_string());
        let mut redis = self.store.redis();
        let claim = match request.external_id.clone() {
            None => None,
            Some(ext) => {
                let key = self.dedupe_key(&request, &ext);
                let mut claimed = None;
                for _ in 0..200 {
                    let seen: Option<String> = redis.get(&key).await.map_err(unavailable)?;
                    match seen.as_deref().map(parse_claim) {
                        Some(Some((true, id, number))) => {
                            return Ok(Registered { ticket_id: id, number, duplicate: true });
                        }
                        Some(Some((false, _, _))) => tokio::time::sleep(Duration::from_millis(25)).await,
                        Some(None) | None => {
                            let (id, number) = self.allocate().await?;
                            let ok: bool = redis::cmd("SET")
                                .arg(&key)
                                .arg(format!("pending {id} {number}"))
                                .arg("NX")
                                .arg("EX")
                                .arg(CLAIM_SECONDS)
                                .query_async::<Option<String>>(&mut redis)
                                .await
                                .map_err(unavailable)?
                                .is_some();
                            if ok {
                                claimed = Some((key, id, number));
                                break;
                            }
                        }
                    }
                }
                Some(claimed.ok_or(RegisterError::Busy)?)
            }
        };
        let (id, number) = match &claim {
            Some((_, id, number)) => (*id, number.clone()),
            None => self.allocate().await?,
        };
        let event = Event {
            id: EventId::new(),
            ticket_id: id,
            occurred_at: self.clock.now(),
            actor: Actor::system(&format!("intake:{}", request.channel.as_str())),
            kind: EventKind::Received { number: number.clone(), request },
        };
        if let Err(e) = self.producer.publish(&event).await {
            if let Some((key, _, _)) = &claim {
                let _: Result<(), _> = redis.del(key).await;
            }
            return Err(RegisterError::Unavailable(e.to_string()));
        }
        if let Some((key, _, _)) = &claim {
            // The event is durable; if this write fails the claim expires and
            // a resubmission could register again, so it is retried once.
            let value = format!("done {id} {number}");
            for _ in 0..2 {
                let r: Result<(), _> = redis.set_ex(key, &value, whistle_runtime::store::REQUEST_TTL_SECONDS).await;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(ticket = %id, error = %e, "could not remember the request's external id")
                    }
                }
            }
        }
        tracing::info!(ticket = %id, number = %number, channel = event_channel(&event), "request registered");
        Ok(Registered { ticket_id: id, number, duplicate: false })
    }
}

fn event_channel(e: &Event) -> &'static str {
    match &e.kind {
        EventKind::Received { request, .. } => request.channel.as_str(),
        _ => "",
    }
}

/// `done <id> <number>` or `pending <id> <number>`.
fn parse_claim(v: &str) -> Option<(bool, TicketId, TicketNumber)> {
    let mut it = v.split(' ');
    let done = match it.next()? {
        "done" => true,
        "pending" => false,
        _ => return None,
    };
    Some((done, TicketId::parse(it.next()?).ok()?, TicketNumber::parse(it.next()?).ok()?))
}

/// A request published by an external system on the `intake-requests` topic
/// (JSON with the fields of [`RequestFields`]). `external_id` is required, so
/// a redelivered message registers once.
pub fn topic_request(payload: &[u8]) -> Result<Request, BadTopicRequest> {
    let fields: RequestFields = serde_json::from_slice(payload).map_err(BadTopicRequest::NotARequest)?;
    if fields.external_id.trim().is_empty() {
        return Err(BadTopicRequest::NoExternalId);
    }
    fields.validate().map_err(BadTopicRequest::Invalid)
}

/// Why a message on the intake topic is not a request (it is dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum BadTopicRequest {
    #[error("not an intake request: {0}")]
    NotARequest(serde_json::Error),
    #[error("invalid request: external_id: is required on the intake topic")]
    NoExternalId,
    #[error("invalid request: {0}")]
    Invalid(whistle_domain::Error),
}

/// Consumes the intake topic.
pub struct TopicIntake {
    registrar: Registrar,
}

impl TopicIntake {
    pub fn new(registrar: Registrar) -> Self {
        TopicIntake { registrar }
    }
}

impl Handler for TopicIntake {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let payload = msg.payload.as_deref().ok_or_else(|| HandleError::Poison("message has no payload".into()))?;
        let request = topic_request(payload).map_err(|e| HandleError::Poison(e.to_string()))?;
        match self.registrar.register(request).await {
            Ok(r) => {
                tracing::debug!(ticket = %r.ticket_id, duplicate = r.duplicate, "topic request registered");
                Ok(())
            }
            // Busy or not durable yet: both pass.
            Err(e @ (RegisterError::Busy | RegisterError::Unavailable(_))) => Err(HandleError::Retry(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parse() {
        let id = TicketId::new();
        let (done, got, n) = parse_claim(&format!("done {id} 20261122000001")).unwrap();
        assert!(done);
        assert_eq!(got, id);
        assert_eq!(n.as_str(), "20261122000001");
        assert!(parse_claim("garbage").is_none());
    }

    #[test]
    fn topic_requests_need_an_external_id_and_valid_fields() {
        let e = topic_request(r#"{"channel":"grid","external_id":"","text":"垃圾满了"}"#.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("external_id"), "{e}");
        let e = topic_request(r#"{"channel":"grid","external_id":"g-1","text":"垃圾满了","lat":100.0,"lon":1.0}"#.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("lat:"), "{e}");
        let e = topic_request(r#"{"channel":"grid","external_id":"g","text":"x","phone":"1"}"#.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("unknown field `phone`"), "{e}");
        assert_eq!(topic_request(r#"{"channel":"grid","external_id":"g-2","text":"垃圾满了"}"#.as_bytes()).unwrap().text, "垃圾满了");
    }
}

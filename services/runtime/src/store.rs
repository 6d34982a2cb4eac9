//! The ticket projection: each ticket's current state folded from its events,
//! kept in Redis for fast reads (GetTicket, desks, the notifier). It is
//! rebuildable: replaying `ticket-events` from the start recreates it.
//!
//! One writer (the projector in intake) applies events in partition order;
//! readers that act on an event they consumed themselves wait until the
//! projection has caught up with that event's offset.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use whistle_domain::{Actor, Event, EventId, EventKind, Ticket, TicketId};

use crate::{Error, RedisConfig, Result};

/// How long a (channel, external id) is remembered.
pub const REQUEST_TTL_SECONDS: u64 = 90 * 24 * 3600;

/// How many recent event ids a ticket remembers, to drop redeliveries.
const REMEMBERED_EVENTS: usize = 128;

/// One line of a ticket's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub event_id: EventId,
    pub event: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub actor: Actor,
    /// Set when the lifecycle refused the event (a late timer, a race).
    pub refused: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub ticket: Ticket,
    /// Kafka position of the last event seen for this ticket.
    pub partition: i32,
    pub offset: i64,
    pub applied: VecDeque<EventId>,
    pub history: Vec<HistoryEntry>,
}

/// Whether the projection has caught up with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum CaughtUp {
    Ready(Box<Projection>),
    /// Not yet: the projector is behind.
    Behind,
    /// The event belongs to no known ticket (it has no `received`).
    Orphan,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Applied,
    /// Seen before (redelivery): nothing changed.
    Duplicate,
    /// The lifecycle refused it; recorded in the history with the rule.
    Refused(String),
}

#[derive(Clone)]
pub struct TicketStore {
    redis: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for TicketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStore").field("prefix", &self.prefix).finish()
    }
}

const BUMP_SEQUENCE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0";

impl TicketStore {
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        Ok(TicketStore { redis: crate::redis_client::connect(cfg).await?, prefix: cfg.key_prefix.clone() })
    }

    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        TicketStore { redis, prefix: prefix.to_owned() }
    }

    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn ticket_key(&self, id: &TicketId) -> String {
        format!("{}ticket:{id}", self.prefix)
    }

    fn number_key(&self, n: &str) -> String {
        format!("{}ticket-number:{n}", self.prefix)
    }

    /// Key of the daily counter behind ticket numbers (`day` is `YYYYMMDD`).
    pub fn sequence_key(&self, day: &str) -> String {
        format!("{}ticket-seq:{day}", self.prefix)
    }

    pub async fn get(&self, id: &TicketId) -> Result<Option<Projection>> {
        let raw: Option<String> = self.redis.clone().get(self.ticket_key(id)).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| Error::Corrupt(id.to_string(), e.to_string()))).transpose()
    }

    /// By ticket number or ticket id.
    pub async fn find(&self, ticket: &str) -> Result<Option<Projection>> {
        let id = match TicketId::parse(ticket) {
            Ok(id) => id,
            Err(_) => {
                let id: Option<String> = self.redis.clone().get(self.number_key(ticket)).await?;
                match id.and_then(|id| TicketId::parse(&id).ok()) {
                    Some(id) => id,
                    None => return Ok(None),
                }
            }
        };
        self.get(&id).await
    }

    fn orphan_key(&self, id: &TicketId) -> String {
        format!("{}orphan:{id}", self.prefix)
    }

    /// The projection once it includes the event at `offset` (same
    /// partition), or why not.
    pub async fn get_caught_up(&self, id: &TicketId, offset: i64) -> Result<CaughtUp> {
        if let Some(p) = self.get(id).await? {
            return Ok(if p.offset >= offset { CaughtUp::Ready(Box::new(p)) } else { CaughtUp::Behind });
        }
        let orphan: Option<i64> = self.redis.clone().get(self.orphan_key(id)).await?;
        Ok(if orphan.is_some_and(|o| o >= offset) { CaughtUp::Orphan } else { CaughtUp::Behind })
    }

    /// Every ticket by the time it was received (milliseconds).
    fn time_index_key(&self) -> String {
        format!("{}tickets:by-time", self.prefix)
    }

    /// The tickets of one category by the time they were received.
    fn category_index_key(&self, category: whistle_domain::Category) -> String {
        format!("{}tickets:by-category:{category}", self.prefix)
    }

    /// The tickets waiting on a platform's desk, by deadline.
    fn queue_key(&self, platform: &whistle_domain::PlatformId) -> String {
        format!("{}queue:{platform}", self.prefix)
    }

    /// The lists a ticket is on, one of each family (desk queue, open at a
    /// platform, a unit's work), with the instant it is sorted by.
    fn lists(&self, t: &Ticket) -> [Option<(String, time::OffsetDateTime)>; 4] {
        [
            t.waiting().map(|w| (self.queue_key(&w.platform), w.sort_at)),
            t.held().map(|(p, at)| (self.held_key(&p), at)),
            t.held().map(|(_, at)| (self.open_key(), at)),
            t.work().map(|(u, _, at)| (self.work_key(&u), at)),
        ]
    }

    /// Every open ticket in the city, whoever holds it.
    fn open_key(&self) -> String {
        format!("{}open", self.prefix)
    }

    /// The open tickets a platform holds (queued there or with its units).
    fn held_key(&self, platform: &whistle_domain::PlatformId) -> String {
        format!("{}held:{platform}", self.prefix)
    }

    /// The open tickets `platform` holds now (for the city, every open
    /// ticket in the city: its command center sees them all), soonest
    /// deadline first, at most `limit`.
    pub async fn held_by(&self, platform: &whistle_domain::PlatformId, limit: usize) -> Result<Vec<Projection>> {
        let city = *platform == whistle_domain::PlatformId::City;
        let key = if city { self.open_key() } else { self.held_key(platform) };
        self.listed(key, limit, |t| t.held().is_some_and(|(p2, _)| city || p2 == *platform)).await
    }

    /// The first `limit` tickets of one of the lists `lists` keeps, still
    /// on it by their projection: an index entry whose ticket moved on in
    /// a write not yet seen here is left out rather than shown in the
    /// wrong list.
    async fn listed(&self, key: String, limit: usize, still: impl Fn(&Ticket) -> bool) -> Result<Vec<Projection>> {
        let ids: Vec<String> = self.redis.clone().zrange(key, 0, limit as isize - 1).await?;
        let ids: Vec<TicketId> = ids.iter().filter_map(|id| TicketId::parse(id).ok()).collect();
        let mut got = self.get_many(&ids).await?;
        got.retain(|p| still(&p.ticket));
        Ok(got)
    }

    /// The tickets a unit is working, by deadline.
    fn work_key(&self, unit: &whistle_domain::UnitCode) -> String {
        format!("{}work:{unit}", self.prefix)
    }

    /// The tickets `unit` is working now (dispatched to it, not yet
    /// completed), soonest deadline first, at most `limit`.
    pub async fn worked_by(&self, unit: &whistle_domain::UnitCode, limit: usize) -> Result<Vec<Projection>> {
        self.listed(self.work_key(unit), limit, |t| t.work().is_some_and(|w| w.0 == *unit)).await
    }

    /// The tickets waiting on `platform`'s desk now, soonest deadline
    /// first (those waiting to be dispatched by when they were received),
    /// at most `limit`.
    pub async fn waiting_on(&self, platform: &whistle_domain::PlatformId, limit: usize) -> Result<Vec<Projection>> {
        self.listed(self.queue_key(platform), limit, |t| t.waiting().is_some_and(|w| w.platform == *platform)).await
    }

    /// Ticket ids received in `[from, to]` (either bound open), newest
    /// first, of the given categories (all when empty), at most `limit`
    /// after skipping `skip`.
    pub async fn received_between(
        &self,
        from: Option<time::OffsetDateTime>,
        to: Option<time::OffsetDateTime>,
        categories: &[whistle_domain::Category],
        skip: usize,
        limit: usize,
    ) -> Result<Vec<TicketId>> {
        let ms =
            |t: Option<time::OffsetDateTime>, open: &str| t.map_or(open.to_owned(), |t| (t.unix_timestamp_nanos() / 1_000_000).to_string());
        let (max, min) = (ms(to, "+inf"), ms(from, "-inf"));
        let mut redis = self.redis.clone();
        let keys: Vec<String> = if categories.is_empty() {
            vec![self.time_index_key()]
        } else {
            categories.iter().map(|c| self.category_index_key(*c)).collect()
        };
        let mut all: Vec<(String, f64)> = Vec::new();
        for key in keys {
            let got: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&key)
                .arg(&max)
                .arg(&min)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(skip + limit)
                .query_async(&mut redis)
                .await?;
            all.extend(got);
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(all.into_iter().skip(skip).take(limit).filter_map(|(id, _)| TicketId::parse(&id).ok()).collect())
    }

    /// The projections of these tickets, in order; unknown ones are left out.
    pub async fn get_many(&self, ids: &[TicketId]) -> Result<Vec<Projection>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.ticket_key(id)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.redis.clone()).await?;
        raw.into_iter()
            .zip(ids)
            .filter_map(|(r, id)| r.map(|r| serde_json::from_str(&r).map_err(|e| Error::Corrupt(id.to_string(), e.to_string()))))
            .collect()
    }

    /// Where intake remembers a (channel, external id) it registered:
    /// `pending <id> <number>` while publishing, `done <id> <number>` after.
    pub fn request_key(&self, channel: &str, external_id: &str) -> String {
        format!("{}request:{channel}:{external_id}", self.prefix)
    }

    fn alive_key(&self) -> String {
        format!("{}projection:alive", self.prefix)
    }

    /// False when Redis lost the projection (flushed, restarted empty).
    pub async fn alive(&self) -> Result<bool> {
        Ok(self.redis.clone().exists(self.alive_key()).await?)
    }

    /// Rebuilds every ticket's projection (and the ticket-number counters)
    /// by replaying the events topic from the start; returns how many events
    /// were read. Safe beside the live projector: applying is idempotent per
    /// Kafka position.
    pub async fn rebuild(&self, kafka: &crate::KafkaConfig) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, i64, Event)>(1024);
        let cfg = kafka.clone();
        let topic = crate::Topics::new(kafka).events();
        let reader = tokio::task::spawn_blocking(move || {
            crate::kafka::scan_topic(&cfg, &topic, |m| {
                if let Ok(e) = whistle_proto::decode_event(&m.payload) {
                    let _ = tx.blocking_send((m.partition, m.offset, e));
                }
            })
        });
        while let Some((partition, offset, event)) = rx.recv().await {
            self.apply(&event, partition, offset).await?;
        }
        let read = reader.await.map_err(|e| Error::task("projection rebuild", e))??;
        let _: () = self.redis.clone().set(self.alive_key(), 1).await?;
        Ok(read)
    }

    /// Polls until the projection includes the event at `offset` (or the
    /// ticket turns out unknown), for at most `within`; `Behind` after that.
    pub async fn wait_caught_up(&self, id: &TicketId, offset: i64, within: std::time::Duration) -> Result<CaughtUp> {
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(2);
        loop {
            let seen = self.get_caught_up(id, offset).await?;
            match seen {
                CaughtUp::Ready(_) | CaughtUp::Orphan => return Ok(seen),
                CaughtUp::Behind if started.elapsed() >= within => return Ok(seen),
                CaughtUp::Behind => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// For a consumer acting on the event at `offset`: the ticket as
    /// projected up to it. Unknown tickets are poison; a projector still
    /// behind after 10 s is retried later.
    pub async fn projection_at(&self, id: &TicketId, offset: i64) -> Result<Projection, crate::HandleError> {
        match self.wait_caught_up(id, offset, std::time::Duration::from_secs(10)).await? {
            CaughtUp::Ready(p) => Ok(*p),
            CaughtUp::Orphan => Err(crate::HandleError::Poison(format!("ticket {id} is unknown (no received event)"))),
            CaughtUp::Behind => Err(crate::HandleError::Retry(format!("ticket {id} not yet projected up to offset {offset}"))),
        }
    }

    /// Applies one event at its Kafka position. Idempotent.
    pub async fn apply(&self, event: &Event, partition: i32, offset: i64) -> Result<Applied> {
        let mut redis = self.redis.clone();
        let key = self.ticket_key(&event.ticket_id);
        let existing = self.get(&event.ticket_id).await?;
        let lists_before = existing.as_ref().map(|p| self.lists(&p.ticket)).unwrap_or_default();
        let entry = |refused: Option<String>| HistoryEntry {
            event_id: event.id,
            event: event.kind.name().to_owned(),
            at: event.occurred_at,
            actor: event.actor.clone(),
            refused,
        };
        let (projection, outcome) = match existing {
            Some(mut p) => {
                if p.partition == partition && p.offset >= offset {
                    return Ok(Applied::Duplicate);
                }
                if p.applied.contains(&event.id) {
                    // The same event again at a later position (a timer fired
                    // twice, a batch re-published): nothing changes but the
                    // position, so readers waiting for it go on.
                    p.partition = partition;
                    p.offset = offset;
                    let _: () = redis.set(&key, serde_json::to_string(&p)?).await?;
                    return Ok(Applied::Duplicate);
                }
                p.partition = partition;
                p.offset = offset;
                p.applied.push_back(event.id);
                if p.applied.len() > REMEMBERED_EVENTS {
                    p.applied.pop_front();
                }
                let outcome = match p.ticket.apply(event) {
                    Ok(()) => {
                        p.history.push(entry(None));
                        Applied::Applied
                    }
                    Err(e) => {
                        p.history.push(entry(Some(e.to_string())));
                        Applied::Refused(e.to_string())
                    }
                };
                (p, outcome)
            }
            None => match Ticket::open(event) {
                Ok(ticket) => (
                    Projection { ticket, partition, offset, applied: VecDeque::from([event.id]), history: vec![entry(None)] },
                    Applied::Applied,
                ),
                Err(e) => {
                    // Remember that this ticket is unknown up to here, so
                    // readers waiting for it stop waiting.
                    let _: () = redis.set_ex(self.orphan_key(&event.ticket_id), offset, 24 * 3600).await?;
                    return Ok(Applied::Refused(e.to_string()));
                }
            },
        };
        let json = serde_json::to_string(&projection)?;
        let id = event.ticket_id.to_string();
        let mut pipe = redis::pipe();
        pipe.atomic().set(&key, json);
        if let (Applied::Applied, EventKind::Classified { category, .. } | EventKind::Reclassified { category, .. }) =
            (&outcome, &event.kind)
        {
            // The by-category index follows the ticket's category.
            let at = projection.ticket.received_at.unix_timestamp() * 1000;
            for c in whistle_domain::Category::ALL {
                if c != category {
                    pipe.zrem(self.category_index_key(*c), &id);
                }
            }
            pipe.zadd(self.category_index_key(*category), &id, at);
        }
        // The desks' queues, the platforms' open tickets and the units'
        // lists follow the ticket's state: in one list of each, or none.
        for (before, now) in lists_before.into_iter().zip(self.lists(&projection.ticket)) {
            if let Some((key, _)) = &before
                && now.as_ref().is_none_or(|(k, _)| k != key)
            {
                pipe.zrem(key, &id);
            }
            if let Some((key, at)) = now {
                pipe.zadd(key, &id, (at.unix_timestamp_nanos() / 1_000_000) as i64);
            }
        }
        if let EventKind::Received { number, request } = &event.kind {
            pipe.set(self.number_key(number.as_str()), &id).zadd(self.time_index_key(), &id, event.occurred_at.unix_timestamp() * 1000);
            if let Some(ext) = &request.external_id {
                // Intake's idempotency record, so a resubmission after a
                // rebuild still finds the ticket.
                pipe.set_ex(
                    self.request_key(request.channel.as_str(), ext),
                    format!("done {} {number}", event.ticket_id),
                    REQUEST_TTL_SECONDS,
                );
            }
            let _: () = pipe.query_async(&mut redis).await?;
            // Keep the number counter ahead of every number issued, so a
            // rebuilt Redis never issues a number twice.
            let _: i64 = redis::Script::new(BUMP_SEQUENCE)
                .key(self.sequence_key(number.day()))
                .arg(number.sequence())
                .invoke_async(&mut redis)
                .await?;
        } else {
            let _: () = pipe.query_async(&mut redis).await?;
        }
        Ok(outcome)
    }
}

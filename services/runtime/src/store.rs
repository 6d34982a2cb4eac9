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

impl Projection {
    /// The rule the lifecycle refused `event` with, if it did.
    pub fn refused(&self, event: &EventId) -> Option<&str> {
        self.history.iter().rev().find(|h| h.event_id == *event).and_then(|h| h.refused.as_deref())
    }
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

/// How many times a write that lost a race with another writer of the
/// same ticket is tried again before giving up (for now).
const COMMIT_TRIES: usize = 50;

/// The numbers a rebuild skips on the days it is told, on top of the
/// highest number the topic shows: a number taken from the counter just
/// before Redis lost it, whose `received` event was not yet on the topic
/// when the rebuild read it, is below them. Bounds the registrations in
/// flight at the moment of a loss.
pub const NUMBERS_SKIPPED_AFTER_A_LOSS: u64 = 10_000;

/// Who writes the projection: the live projector must not write while the
/// projection is lost (a rebuild is putting it back); a rebuild may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Live,
    Rebuild,
}

enum Commit {
    Done,
    /// Another writer changed the ticket since it was read.
    Conflict,
    /// The projection is lost (its marker is gone) and this writer is live.
    Lost,
}

/// The writes that follow from one event besides the ticket's own value,
/// as the commit script takes them: the keys they touch, and per write
/// its operation, the key's index and two arguments.
#[derive(Default)]
struct Writes {
    ticket: Option<String>,
    keys: Vec<String>,
    args: Vec<String>,
}

impl Writes {
    fn op(&mut self, op: &str, key: String, a: String, b: String) {
        // KEYS[1] is the ticket and KEYS[2] the alive marker.
        let index = match self.keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key);
                self.keys.len() - 1
            }
        } + 3;
        self.args.extend([op.to_owned(), index.to_string(), a, b]);
    }

    fn zadd(&mut self, key: String, member: &str, score: i64) {
        self.op("zadd", key, member.to_owned(), score.to_string());
    }

    fn zrem(&mut self, key: String, member: &str) {
        self.op("zrem", key, member.to_owned(), String::new());
    }

    fn set(&mut self, key: String, value: String) {
        self.op("set", key, value, String::new());
    }

    fn set_ex(&mut self, key: String, value: String, seconds: u64) {
        self.op("setex", key, value, seconds.to_string());
    }

    /// Raises a counter to `n` if it is below.
    fn at_least(&mut self, key: String, n: u64) {
        self.op("max", key, n.to_string(), String::new());
    }
}

/// One event's writes, all or nothing: only if the ticket is still stored
/// as it was read, and (for the live projector) while the projection's
/// alive marker is there.
/// KEYS: ticket, alive, then the keys the writes name.
/// ARGV: writer (live|rebuild), the value read ('' absent), the new value
/// ('' none), then per write: op, key index, a, b.
/// Returns 1 written, 0 the ticket changed meanwhile, -1 lost.
static COMMIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!(
        r"
if ARGV[1] == 'live' and not {} then return -1 end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[3]) end
for i = 4, #ARGV, 4 do
  local op, k, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'zadd' then redis.call('ZADD', k, b, a)
  elseif op == 'zrem' then redis.call('ZREM', k, a)
  elseif op == 'set' then redis.call('SET', k, a)
  elseif op == 'setex' then redis.call('SET', k, a, 'EX', b)
  elseif op == 'max' then
    if tonumber(redis.call('GET', k) or '0') < tonumber(a) then redis.call('SET', k, a) end
  end
end
return 1",
        crate::marker::alive_lua("KEYS[2]")
    ))
});

/// KEYS: alive, the day's counter. The next number, or -1 while the
/// projection is lost.
static NEXT_NUMBER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!("if not {} then return -1 end return redis.call('INCR', KEYS[2])", crate::marker::alive_lua("KEYS[1]")))
});

/// How long a reader (a desk, GetTicket) waits for a lost projection to
/// be rebuilt before it is told to retry.
const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The end of a rebuild: the projection is alive again only if nothing
/// took it away while it was rebuilt (the marker set at its start is
/// still there, set by this run of the server); the counters of the days
/// named skip ahead.
/// KEYS: started, alive, then counters. ARGV: how many numbers to skip.
static FINISH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!(
        r"
if not {} then return 0 end
for i = 3, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[1]) end
redis.call('SET', KEYS[2], {})
return 1",
        crate::marker::alive_lua("KEYS[1]"),
        crate::marker::RUN_ID_LUA
    ))
});

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

    /// By ticket number or ticket id. A ticket not found while Redis has
    /// lost the projection is looked for again once it is rebuilt (an
    /// [`Error::Unavailable`] if that takes longer than a caller waits).
    pub async fn find(&self, ticket: &str) -> Result<Option<Projection>> {
        match self.find_now(ticket).await? {
            None if !self.alive().await? => {
                self.wait_alive(READERS_WAIT).await?;
                self.find_now(ticket).await
            }
            found => Ok(found),
        }
    }

    /// By ticket number or ticket id, as stored now.
    async fn find_now(&self, ticket: &str) -> Result<Option<Projection>> {
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

    /// The next ticket number's sequence on `day` (`YYYYMMDD`); `None`
    /// while the projection is lost: the counters are rebuilt with it, and
    /// a number taken before then could be one already issued.
    pub async fn next_number(&self, day: &str) -> Result<Option<u64>> {
        let n: i64 = NEXT_NUMBER.key(self.alive_key()).key(self.sequence_key(day)).invoke_async(&mut self.redis.clone()).await?;
        Ok(u64::try_from(n).ok())
    }

    fn alive_key(&self) -> String {
        format!("{}projection:alive", self.prefix)
    }

    /// False when Redis may have lost some of the projection (flushed,
    /// restarted, failed over: see [`crate::marker`]).
    pub async fn alive(&self) -> Result<bool> {
        crate::marker::alive(&mut self.redis.clone(), &self.alive_key()).await
    }

    /// Set when a rebuild starts; gone if Redis loses its data again
    /// before the rebuild ends.
    fn started_key(&self) -> String {
        format!("{}projection:rebuild-started", self.prefix)
    }

    /// Rebuilds every ticket's projection (and the ticket-number counters)
    /// by replaying the events topic from the start; returns how many events
    /// were read. Safe beside the live projector, which waits while the
    /// projection is lost, and beside another replica's rebuild: every
    /// write is a compare-and-set. If Redis loses its data again meanwhile,
    /// it starts over. `days` (`YYYYMMDD`, intake's today and yesterday) are
    /// the days whose counters skip [`NUMBERS_SKIPPED_AFTER_A_LOSS`] when the
    /// topic was not empty: numbers handed out just before the loss may not
    /// have been on the topic yet when it was read.
    pub async fn rebuild(&self, kafka: &crate::KafkaConfig, days: &[String]) -> Result<u64> {
        loop {
            crate::marker::mark(&mut self.redis.clone(), &self.started_key()).await?;
            let read = self.replay(kafka).await?;
            let mut finish = FINISH.prepare_invoke();
            finish.key(self.started_key()).key(self.alive_key());
            if read > 0 {
                for day in days {
                    finish.key(self.sequence_key(day));
                }
            }
            let done: i64 = finish.arg(NUMBERS_SKIPPED_AFTER_A_LOSS).invoke_async(&mut self.redis.clone()).await?;
            if done == 1 {
                return Ok(read);
            }
            tracing::warn!(events = read, "redis lost the ticket projection again while it was rebuilt; starting over");
        }
    }

    /// Applies every event of the topic, in order, as a rebuild.
    async fn replay(&self, kafka: &crate::KafkaConfig) -> Result<u64> {
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
            self.apply_as(&event, partition, offset, Writer::Rebuild).await?;
        }
        reader.await.map_err(|e| Error::task("projection rebuild", e))?
    }

    /// Waits up to `within` for a lost projection to be rebuilt; an
    /// [`Error::Unavailable`] after that.
    pub async fn wait_alive(&self, within: std::time::Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while !self.alive().await? {
            if started.elapsed() >= within {
                return Err(Error::Unavailable("the ticket projection was lost and is being rebuilt; retry shortly".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
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

    /// For a consumer acting on `event` (at `offset`): the ticket as
    /// projected up to it, or `None` when the lifecycle refused the event,
    /// which no service acts on (a stale desk's or unit's action, a timer
    /// of a superseded deadline, a forgery).
    pub async fn accepted_at(&self, event: &Event, offset: i64) -> Result<Option<Projection>, crate::HandleError> {
        let p = self.projection_at(&event.ticket_id, offset).await?;
        match p.refused(&event.id) {
            Some(rule) => {
                tracing::info!(ticket = %event.ticket_id, event = event.kind.name(), rule, "not acting on an event the lifecycle refused");
                Ok(None)
            }
            None => Ok(Some(p)),
        }
    }

    /// Applies one event at its Kafka position, as the live projector does:
    /// idempotent, and refused with [`Error::Unavailable`] (retry later)
    /// while the projection is lost and not yet rebuilt, so that nothing is
    /// taken for an orphan or written over half a rebuild.
    pub async fn apply(&self, event: &Event, partition: i32, offset: i64) -> Result<Applied> {
        self.apply_as(event, partition, offset, Writer::Live).await
    }

    async fn apply_as(&self, event: &Event, partition: i32, offset: i64, writer: Writer) -> Result<Applied> {
        // Another writer may change the ticket between the read and the write
        // (a rebuild beside the projector, two replicas rebuilding): the
        // write is a compare-and-set, and a lost race reads again.
        for _ in 0..COMMIT_TRIES {
            let raw: Option<String> = self.redis.clone().get(self.ticket_key(&event.ticket_id)).await?;
            let existing = raw
                .as_deref()
                .map(|r| serde_json::from_str::<Projection>(r).map_err(|e| Error::Corrupt(event.ticket_id.to_string(), e.to_string())))
                .transpose()?;
            let Some((writes, outcome)) = self.plan(event, partition, offset, existing)? else {
                return Ok(Applied::Duplicate);
            };
            match self.commit(&event.ticket_id, raw.as_deref().unwrap_or(""), writes, writer).await? {
                Commit::Done => return Ok(outcome),
                Commit::Conflict => continue,
                Commit::Lost => return Err(Error::Unavailable("the ticket projection was lost and is being rebuilt".into())),
            }
        }
        Err(Error::Unavailable(format!("ticket {} kept changing under its writes", event.ticket_id)))
    }

    /// What applying `event` to the stored projection writes; `None` when it
    /// was applied before at this position or later.
    fn plan(&self, event: &Event, partition: i32, offset: i64, existing: Option<Projection>) -> Result<Option<(Writes, Applied)>> {
        let mut w = Writes::default();
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
                    return Ok(None);
                }
                if p.applied.contains(&event.id) {
                    // The same event again at a later position (a timer fired
                    // twice, a batch re-published): nothing changes but the
                    // position, so readers waiting for it go on.
                    p.partition = partition;
                    p.offset = offset;
                    w.ticket = Some(serde_json::to_string(&p)?);
                    return Ok(Some((w, Applied::Duplicate)));
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
                    w.set_ex(self.orphan_key(&event.ticket_id), offset.to_string(), 24 * 3600);
                    return Ok(Some((w, Applied::Refused(e.to_string()))));
                }
            },
        };
        w.ticket = Some(serde_json::to_string(&projection)?);
        let id = event.ticket_id.to_string();
        if let (Applied::Applied, EventKind::Classified { category, .. } | EventKind::Reclassified { category, .. }) =
            (&outcome, &event.kind)
        {
            // The by-category index follows the ticket's category.
            let at = projection.ticket.received_at.unix_timestamp() * 1000;
            for c in whistle_domain::Category::ALL {
                if c != category {
                    w.zrem(self.category_index_key(*c), &id);
                }
            }
            w.zadd(self.category_index_key(*category), &id, at);
        }
        // The desks' queues, the platforms' open tickets and the units'
        // lists follow the ticket's state: in one list of each, or none.
        for (before, now) in lists_before.into_iter().zip(self.lists(&projection.ticket)) {
            if let Some((key, _)) = &before
                && now.as_ref().is_none_or(|(k, _)| k != key)
            {
                w.zrem(key.clone(), &id);
            }
            if let Some((key, at)) = now {
                w.zadd(key, &id, (at.unix_timestamp_nanos() / 1_000_000) as i64);
            }
        }
        if let EventKind::Received { number, request } = &event.kind {
            w.set(self.number_key(number.as_str()), id.clone());
            w.zadd(self.time_index_key(), &id, event.occurred_at.unix_timestamp() * 1000);
            if let Some(ext) = &request.external_id {
                // Intake's idempotency record, so a resubmission after a
                // rebuild still finds the ticket.
                w.set_ex(
                    self.request_key(request.channel.as_str(), ext),
                    format!("done {} {number}", event.ticket_id),
                    REQUEST_TTL_SECONDS,
                );
            }
            // Keep the number counter ahead of every number issued, so a
            // rebuilt Redis never issues a number twice.
            w.at_least(self.sequence_key(number.day()), number.sequence());
        }
        Ok(Some((w, outcome)))
    }

    /// Writes a plan if the ticket is still stored as `expected` (empty:
    /// absent) and, for the live projector, the projection is alive.
    async fn commit(&self, id: &TicketId, expected: &str, w: Writes, writer: Writer) -> Result<Commit> {
        let mut invocation = COMMIT.prepare_invoke();
        invocation.key(self.ticket_key(id)).key(self.alive_key());
        for k in &w.keys {
            invocation.key(k);
        }
        invocation.arg(if writer == Writer::Live { "live" } else { "rebuild" }).arg(expected).arg(w.ticket.as_deref().unwrap_or(""));
        for a in &w.args {
            invocation.arg(a);
        }
        let r: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(match r {
            1 => Commit::Done,
            0 => Commit::Conflict,
            _ => Commit::Lost,
        })
    }
}

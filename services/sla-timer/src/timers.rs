//! Timers in Redis. Every operation is one round trip (a Lua script), so
//! arm, cancel, claim and acknowledge are atomic:
//!
//! - `due`     sorted set: timer -> due time (ms)
//! - `claimed` sorted set: timer -> claim expiry (ms); a claim not
//!   acknowledged in time (the instance died) is claimed again
//! - `data`    hash: timer -> JSON payload for the event it fires
//! - `ticket:<id>` set: the ticket's timers, for cancelling them together
//! - `fired:<timer>`: marker that the timer has fired; arming it again (a
//!   redelivered event) does nothing
//!
//! All keys share one hash tag, so the scripts also run on Redis Cluster.

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use whistle_domain::{EventId, TicketId, TimerKey, UnitCode};

use crate::Result;

/// How long a fired marker is kept (a redelivery older than this is not expected).
const FIRED_TTL_SECONDS: u64 = 40 * 24 * 3600;

/// What a timer needs to publish its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerData {
    pub unit: UnitCode,
    /// The deadline (ms since epoch) this timer belongs to.
    pub deadline_ms: i64,
    /// The trace of the event that armed it, so the overdue event joins the
    /// ticket's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub key: TimerKey,
    pub due_ms: i64,
    pub data: TimerData,
}

#[derive(Clone)]
pub struct TimerStore {
    redis: ConnectionManager,
    tag: String,
}

const ARM: &str = r"
-- KEYS: due, claimed, data, ticket set, fired marker; ARGV: member, due ms, data
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
return added";

const CANCEL: &str = r"
-- KEYS: due, claimed, data, ticket set; ARGV: deadline version to keep ('' keeps none)
-- Returns how many timers were removed.
local members = redis.call('SMEMBERS', KEYS[4])
local n = 0
for _, m in ipairs(members) do
  if ARGV[1] == '' or not string.find(m, ARGV[1], 1, true) then
    n = n + redis.call('ZREM', KEYS[1], m) + redis.call('ZREM', KEYS[2], m)
    redis.call('HDEL', KEYS[3], m)
    redis.call('SREM', KEYS[4], m)
  end
end
return n";

const CLAIM: &str = r"
-- KEYS: due, claimed, data; ARGV: now ms, claim ttl ms, max
-- Returns {member, due, data, ...} for timers due by now and for claims
-- that expired (their instance died before acknowledging).
local now = tonumber(ARGV[1])
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(expired) do
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), m)
  table.insert(out, m); table.insert(out, tostring(now)); table.insert(out, redis.call('HGET', KEYS[3], m) or '')
end
local left = tonumber(ARGV[3]) - #expired
if left > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, left)
  for i = 1, #due, 2 do
    local m = due[i]
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), m)
    table.insert(out, m); table.insert(out, due[i + 1]); table.insert(out, redis.call('HGET', KEYS[3], m) or '')
  end
end
return out";

const ACK: &str = r"
-- KEYS: claimed, data, ticket set, fired marker; ARGV: member, fired ttl
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
return 1";

const NEXT: &str = r"
-- KEYS: due, claimed; the earliest time anything needs attention
local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local c = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local best = false
if d[2] then best = tonumber(d[2]) end
if c[2] and (not best or tonumber(c[2]) < best) then best = tonumber(c[2]) end
return best";

impl TimerStore {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        TimerStore {
            redis,
            tag: format!("{prefix}{{timers}}"),
        }
    }

    pub fn due_key(&self) -> String {
        format!("{}:due", self.tag)
    }

    pub fn claimed_key(&self) -> String {
        format!("{}:claimed", self.tag)
    }

    fn data_key(&self) -> String {
        format!("{}:data", self.tag)
    }

    fn ticket_key(&self, t: &TicketId) -> String {
        format!("{}:ticket:{t}", self.tag)
    }

    fn fired_key(&self, k: &TimerKey) -> String {
        format!("{}:fired:{k}", self.tag)
    }

    /// Arms a timer unless it is armed, claimed or has fired already.
    /// Returns true if it was newly armed.
    pub async fn arm(&self, key: &TimerKey, due_ms: i64, data: &TimerData) -> Result<bool> {
        let n: i64 = redis::Script::new(ARM)
            .key(self.due_key())
            .key(self.claimed_key())
            .key(self.data_key())
            .key(self.ticket_key(&key.ticket))
            .key(self.fired_key(key))
            .arg(key.to_string())
            .arg(due_ms)
            .arg(serde_json::to_string(data)?)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(n > 0)
    }

    /// Cancels every timer of a ticket. Returns how many were removed.
    pub async fn cancel_ticket(&self, ticket: &TicketId) -> Result<u32> {
        self.cancel(ticket, None).await
    }

    /// Cancels the ticket's timers of every deadline version but `keep`
    /// (a redelivered event must not disturb the timers it armed itself).
    pub async fn supersede(&self, ticket: &TicketId, keep: &EventId) -> Result<u32> {
        self.cancel(ticket, Some(keep)).await
    }

    async fn cancel(&self, ticket: &TicketId, keep: Option<&EventId>) -> Result<u32> {
        let n: u32 = redis::Script::new(CANCEL)
            .key(self.due_key())
            .key(self.claimed_key())
            .key(self.data_key())
            .key(self.ticket_key(ticket))
            .arg(keep.map(ToString::to_string).unwrap_or_default())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(n)
    }

    /// Claims up to `max` timers that are due at `now_ms` (or whose claim
    /// expired), for `claim_ttl_ms`.
    pub async fn claim(&self, now_ms: i64, claim_ttl_ms: i64, max: usize) -> Result<Vec<Claimed>> {
        let raw: Vec<String> = redis::Script::new(CLAIM)
            .key(self.due_key())
            .key(self.claimed_key())
            .key(self.data_key())
            .arg(now_ms)
            .arg(claim_ttl_ms)
            .arg(max)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let mut out = Vec::with_capacity(raw.len() / 3);
        for chunk in raw.chunks_exact(3) {
            let (member, due, data) = (&chunk[0], &chunk[1], &chunk[2]);
            let parsed = TimerKey::parse(member)
                .ok()
                .zip(serde_json::from_str::<TimerData>(data).ok());
            match parsed {
                Some((key, data)) => out.push(Claimed {
                    key,
                    due_ms: due.parse().unwrap_or(now_ms),
                    data,
                }),
                None => {
                    tracing::error!(timer = %member, "unreadable timer dropped");
                    self.ack_raw(member, None).await?;
                }
            }
        }
        Ok(out)
    }

    /// The timer's event is durable: forget the timer, remember it fired.
    pub async fn ack(&self, key: &TimerKey) -> Result<()> {
        self.ack_raw(&key.to_string(), Some(key)).await
    }

    async fn ack_raw(&self, member: &str, key: Option<&TimerKey>) -> Result<()> {
        let (ticket_key, fired_key) = match key {
            Some(k) => (self.ticket_key(&k.ticket), self.fired_key(k)),
            None => (
                format!("{}:ticket:unknown", self.tag),
                format!("{}:fired:unreadable", self.tag),
            ),
        };
        let _: i64 = redis::Script::new(ACK)
            .key(self.claimed_key())
            .key(self.data_key())
            .key(ticket_key)
            .key(fired_key)
            .arg(member)
            .arg(FIRED_TTL_SECONDS)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    fn units_key(&self) -> String {
        format!("{}:units", self.tag)
    }

    /// Remembers which unit holds the ticket, for deadlines set by events
    /// that do not name it (extension, rework).
    pub async fn remember_unit(&self, ticket: &TicketId, unit: &UnitCode) -> Result<()> {
        let _: i64 = redis::AsyncCommands::hset(
            &mut self.redis.clone(),
            self.units_key(),
            ticket.to_string(),
            unit.as_str(),
        )
        .await?;
        Ok(())
    }

    pub async fn forget_unit(&self, ticket: &TicketId) -> Result<()> {
        let _: i64 = redis::AsyncCommands::hdel(
            &mut self.redis.clone(),
            self.units_key(),
            ticket.to_string(),
        )
        .await?;
        Ok(())
    }

    pub async fn unit_of(&self, ticket: &TicketId) -> Result<Option<UnitCode>> {
        let u: Option<String> = redis::AsyncCommands::hget(
            &mut self.redis.clone(),
            self.units_key(),
            ticket.to_string(),
        )
        .await?;
        Ok(u.and_then(|u| UnitCode::parse(&u).ok()))
    }

    /// The earliest due time or claim expiry, if any timer is outstanding.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let n: Option<i64> = redis::Script::new(NEXT)
            .key(self.due_key())
            .key(self.claimed_key())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(n)
    }
}

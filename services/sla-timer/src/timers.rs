//! Timers in Redis, built for speed and for Redis Cluster.
//!
//! Tickets are spread over `shards`; all keys of a shard share the hash tag
//! `{w:<shard>}`, so every script touches one slot. Per shard:
//!
//! - `due`      sorted set: member = ticket id (16 bytes) + kind (1 byte:
//!   `w` warning, `1` first overdue, `2` second overdue); score = due ms
//! - `claimed`  sorted set: the same members; score = claim expiry ms. A claim
//!   not acknowledged in time (its instance died) is claimed again.
//! - `tickets`  hash: ticket id (16 bytes) -> `version|fired|unit|deadline_ms|traceparent`,
//!   one record per ticket for all its timers: the current deadline version
//!   (32 hex), which timers of that version fired (`w12` flags as `0`/`1`),
//!   and what the events need
//! - `alive`    a marker; if it is missing, Redis lost its data and the timers
//!   are rebuilt from Kafka
//!
//! Arm, cancel, claim and acknowledge are one script call (one round trip)
//! each. A timer of a superseded version is removed when the new version is
//! armed; a fired timer is never armed again for the same version.

use redis::aio::ConnectionLike;
use whistle_domain::{EventId, TicketId, TimerKind, UnitCode};

use crate::Result;

/// A Redis connection the timers can use: one server or a cluster.
pub trait Conn: ConnectionLike + Clone + Send + Sync + 'static {}
impl<T: ConnectionLike + Clone + Send + Sync + 'static> Conn for T {}

fn kind_byte(k: TimerKind) -> u8 {
    match k {
        TimerKind::Warning => b'w',
        TimerKind::FirstOverdue => b'1',
        TimerKind::SecondOverdue => b'2',
    }
}

fn kind_of(b: u8) -> Option<TimerKind> {
    match b {
        b'w' => Some(TimerKind::Warning),
        b'1' => Some(TimerKind::FirstOverdue),
        b'2' => Some(TimerKind::SecondOverdue),
        _ => None,
    }
}

fn member(ticket: &TicketId, kind: TimerKind) -> Vec<u8> {
    let mut m = ticket_bytes(ticket).to_vec();
    m.push(kind_byte(kind));
    m
}

fn ticket_bytes(t: &TicketId) -> [u8; 16] {
    *t.as_bytes()
}

fn ticket_from(b: &[u8]) -> Option<TicketId> {
    <[u8; 16]>::try_from(b).ok().map(TicketId::from_bytes)
}

fn version_hex(v: &EventId) -> String {
    v.simple()
}

fn version_from(hex: &str) -> Option<EventId> {
    EventId::parse(hex).ok()
}

/// What one ticket's timers need to produce their events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: EventId,
    pub unit: UnitCode,
    pub deadline_ms: i64,
    pub traceparent: Option<String>,
}

/// One armed timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub kind: TimerKind,
    pub due_ms: i64,
}

/// A claimed timer, handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub ticket: TicketId,
    pub kind: TimerKind,
    pub due_ms: i64,
    pub record: Record,
}

const ARM: &str = r"
-- KEYS: due, claimed, tickets; ARGV: ticket(16B), version(32), rest, fired-if-new(3), then kind, due pairs
local rec = redis.call('HGET', KEYS[3], ARGV[1])
local fired = ARGV[4]
if rec and string.sub(rec, 1, 32) == ARGV[2] then
  fired = string.sub(rec, 34, 36)
else
  for _, k in ipairs({'w', '1', '2'}) do
    redis.call('ZREM', KEYS[1], ARGV[1] .. k)
    redis.call('ZREM', KEYS[2], ARGV[1] .. k)
  end
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. '|' .. fired .. '|' .. ARGV[3])
local n = 0
for i = 5, #ARGV, 2 do
  local k = ARGV[i]
  local idx = (k == 'w' and 1) or (k == '1' and 2) or 3
  local m = ARGV[1] .. k
  if string.sub(fired, idx, idx) == '0' and not redis.call('ZSCORE', KEYS[2], m) then
    n = n + redis.call('ZADD', KEYS[1], ARGV[i + 1], m)
  end
end
return n";

const CANCEL: &str = r"
-- KEYS: due, claimed, tickets; ARGV: ticket(16B), forget(0/1)
-- Removes the ticket's timers. The record keeps the unit (a reopened ticket
-- goes back to it) unless forget=1; its version is voided so nothing fires.
local n = 0
for _, k in ipairs({'w', '1', '2'}) do
  n = n + redis.call('ZREM', KEYS[1], ARGV[1] .. k) + redis.call('ZREM', KEYS[2], ARGV[1] .. k)
end
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  local rec = redis.call('HGET', KEYS[3], ARGV[1])
  if rec then redis.call('HSET', KEYS[3], ARGV[1], string.rep('0', 32) .. string.sub(rec, 33)) end
end
return n";

const CLAIM: &str = r"
-- KEYS: due, claimed, tickets; ARGV: now, claim ttl, max
-- Returns {member, due, record, ...}: claims that expired (an instance died
-- before acknowledging) and timers due by now.
local now = tonumber(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
for _, m in ipairs(expired) do
  redis.call('ZADD', KEYS[2], until_, m)
  local rec = redis.call('HGET', KEYS[3], string.sub(m, 1, 16))
  if rec then
    table.insert(out, m); table.insert(out, tostring(now)); table.insert(out, rec)
  else
    redis.call('ZREM', KEYS[2], m)
  end
end
local left = max - #expired
if left > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, left)
  if #due > 0 then
    local members, adds = {}, {}
    for i = 1, #due, 2 do
      members[#members + 1] = due[i]
      adds[#adds + 1] = until_
      adds[#adds + 1] = due[i]
    end
    redis.call('ZREM', KEYS[1], unpack(members))
    redis.call('ZADD', KEYS[2], unpack(adds))
    for i = 1, #due, 2 do
      local rec = redis.call('HGET', KEYS[3], string.sub(due[i], 1, 16))
      if rec then
        table.insert(out, due[i]); table.insert(out, due[i + 1]); table.insert(out, rec)
      else
        redis.call('ZREM', KEYS[2], due[i])
      end
    end
  end
end
return out";

const ACK: &str = r"
-- KEYS: claimed, tickets; ARGV: (member, version) pairs
-- The timers' events are durable: forget the claims, mark them fired.
for i = 1, #ARGV, 2 do
  local m = ARGV[i]
  redis.call('ZREM', KEYS[1], m)
  local t = string.sub(m, 1, 16)
  local rec = redis.call('HGET', KEYS[2], t)
  if rec and string.sub(rec, 1, 32) == ARGV[i + 1] then
    local k = string.sub(m, 17, 17)
    local idx = 33 + ((k == 'w' and 1) or (k == '1' and 2) or 3)
    redis.call('HSET', KEYS[2], t, string.sub(rec, 1, idx - 1) .. '1' .. string.sub(rec, idx + 1))
  end
end
return #ARGV / 2";

const NEXT: &str = r"
-- KEYS: due, claimed, alive; returns {earliest ms or -1, alive 0/1}
local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local c = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local best = -1
if d[2] then best = tonumber(d[2]) end
if c[2] and (best < 0 or tonumber(c[2]) < best) then best = tonumber(c[2]) end
return {best, redis.call('EXISTS', KEYS[3])}";

/// The timer store. Cheap to clone.
#[derive(Clone)]
pub struct TimerStore<C> {
    conn: C,
    prefix: String,
    shards: u16,
    arm: redis::Script,
    cancel: redis::Script,
    claim: redis::Script,
    ack: redis::Script,
    next: redis::Script,
}

impl<C: Conn> TimerStore<C> {
    pub fn new(conn: C, prefix: &str, shards: u16) -> Self {
        TimerStore {
            conn,
            prefix: prefix.to_owned(),
            shards: shards.max(1),
            arm: redis::Script::new(ARM),
            cancel: redis::Script::new(CANCEL),
            claim: redis::Script::new(CLAIM),
            ack: redis::Script::new(ACK),
            next: redis::Script::new(NEXT),
        }
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    pub fn shard_of(&self, ticket: &TicketId) -> u16 {
        let b = ticket_bytes(ticket);
        u16::from_be_bytes([b[14], b[15]]) % self.shards
    }

    fn key(&self, shard: u16, name: &str) -> String {
        format!("{}{{w:{shard}}}:{name}", self.prefix)
    }

    /// Every key the store uses, for tests and the benchmark.
    pub fn keys(&self) -> Vec<String> {
        (0..self.shards)
            .flat_map(|s| ["due", "claimed", "tickets", "alive"].map(|n| self.key(s, n)))
            .collect()
    }

    /// Arms the timers of a ticket's deadline version. A new version replaces
    /// the old one's timers; for the same version, timers that fired or are
    /// claimed are left alone. `fired` says which of a *new* version's timers
    /// already fired (a rebuild from Kafka), as `[warning, first, second]`.
    pub async fn arm(
        &self,
        ticket: &TicketId,
        record: &Record,
        timers: &[Arm],
        fired: [bool; 3],
    ) -> Result<u32> {
        let s = self.shard_of(ticket);
        let rest = format!(
            "{}|{}|{}",
            record.unit,
            record.deadline_ms,
            record.traceparent.as_deref().unwrap_or("")
        );
        let fired: String = fired.iter().map(|f| if *f { '1' } else { '0' }).collect();
        let mut inv = self.arm.key(self.key(s, "due"));
        inv.key(self.key(s, "claimed")).key(self.key(s, "tickets"));
        inv.arg(&ticket_bytes(ticket)[..])
            .arg(version_hex(&record.version))
            .arg(rest)
            .arg(fired);
        for t in timers {
            inv.arg(&[kind_byte(t.kind)][..]).arg(t.due_ms);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Removes a ticket's timers (completed, returned, whistled). With
    /// `forget`, the record goes too (closed).
    pub async fn cancel(&self, ticket: &TicketId, forget: bool) -> Result<u32> {
        let s = self.shard_of(ticket);
        Ok(self
            .cancel
            .key(self.key(s, "due"))
            .key(self.key(s, "claimed"))
            .key(self.key(s, "tickets"))
            .arg(&ticket_bytes(ticket)[..])
            .arg(if forget { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// The unit of the ticket's last assignment, if known.
    pub async fn record_unit(&self, ticket: &TicketId) -> Result<Option<UnitCode>> {
        let s = self.shard_of(ticket);
        let rec: Option<String> = redis::cmd("HGET")
            .arg(self.key(s, "tickets"))
            .arg(&ticket_bytes(ticket)[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(rec.and_then(|r| r.split('|').nth(2).and_then(|u| UnitCode::parse(u).ok())))
    }

    /// Claims up to `max` timers of one shard due at `now_ms` (or whose claim
    /// expired), for `ttl_ms`.
    pub async fn claim(
        &self,
        shard: u16,
        now_ms: i64,
        ttl_ms: i64,
        max: usize,
    ) -> Result<Vec<Due>> {
        let raw: Vec<Vec<u8>> = self
            .claim
            .key(self.key(shard, "due"))
            .key(self.key(shard, "claimed"))
            .key(self.key(shard, "tickets"))
            .arg(now_ms)
            .arg(ttl_ms)
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::with_capacity(raw.len() / 3);
        for c in raw.chunks_exact(3) {
            match parse_due(&c[0], &c[1], &c[2]) {
                Some(d) => out.push(d),
                None => tracing::error!(shard, "unreadable timer record skipped"),
            }
        }
        Ok(out)
    }

    /// The timers' events are durable: release the claims, mark them fired.
    pub async fn ack(&self, shard: u16, done: &[Due]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut inv = self.ack.key(self.key(shard, "claimed"));
        inv.key(self.key(shard, "tickets"));
        for d in done {
            inv.arg(member(&d.ticket, d.kind))
                .arg(version_hex(&d.record.version));
        }
        let _: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// For one shard: the earliest due time or claim expiry, and whether the
    /// shard's `alive` marker is there.
    pub async fn next_due(&self, shard: u16) -> Result<(Option<i64>, bool)> {
        let (best, alive): (i64, i64) = self
            .next
            .key(self.key(shard, "due"))
            .key(self.key(shard, "claimed"))
            .key(self.key(shard, "alive"))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(((best >= 0).then_some(best), alive == 1))
    }

    /// Marks every shard as holding its timers (after a rebuild).
    pub async fn mark_alive(&self) -> Result<()> {
        for s in 0..self.shards {
            let _: () = redis::cmd("SET")
                .arg(self.key(s, "alive"))
                .arg(1)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        Ok(())
    }

    /// Outstanding (due or claimed) timers of every shard.
    pub async fn outstanding(&self) -> Result<u64> {
        let mut n = 0;
        for s in 0..self.shards {
            for name in ["due", "claimed"] {
                let c: u64 = redis::cmd("ZCARD")
                    .arg(self.key(s, name))
                    .query_async(&mut self.conn.clone())
                    .await?;
                n += c;
            }
        }
        Ok(n)
    }

    /// Timers of one ticket waiting to be due (not claimed), with their due
    /// times in ms.
    pub async fn due_of(&self, ticket: &TicketId) -> Result<Vec<(TimerKind, i64)>> {
        let s = self.shard_of(ticket);
        let mut out = Vec::new();
        for k in [
            TimerKind::Warning,
            TimerKind::FirstOverdue,
            TimerKind::SecondOverdue,
        ] {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(self.key(s, "due"))
                .arg(member(ticket, k))
                .query_async(&mut self.conn.clone())
                .await?;
            if let Some(ms) = score {
                out.push((k, ms as i64));
            }
        }
        Ok(out)
    }

    /// Outstanding timers of one ticket.
    pub async fn timers_of(&self, ticket: &TicketId) -> Result<Vec<TimerKind>> {
        let s = self.shard_of(ticket);
        let mut kinds = Vec::new();
        for k in [
            TimerKind::Warning,
            TimerKind::FirstOverdue,
            TimerKind::SecondOverdue,
        ] {
            for name in ["due", "claimed"] {
                let score: Option<f64> = redis::cmd("ZSCORE")
                    .arg(self.key(s, name))
                    .arg(member(ticket, k))
                    .query_async(&mut self.conn.clone())
                    .await?;
                if score.is_some() {
                    kinds.push(k);
                }
            }
        }
        Ok(kinds)
    }
}

fn parse_due(m: &[u8], due: &[u8], rec: &[u8]) -> Option<Due> {
    if m.len() != 17 {
        return None;
    }
    let ticket = ticket_from(&m[..16])?;
    let kind = kind_of(m[16])?;
    let due_ms: i64 = std::str::from_utf8(due).ok()?.parse::<f64>().ok()? as i64;
    let rec = std::str::from_utf8(rec).ok()?;
    let mut parts = rec.splitn(5, '|');
    let version = version_from(parts.next()?)?;
    let _fired = parts.next()?;
    let unit = UnitCode::parse(parts.next()?).ok()?;
    let deadline_ms = parts.next()?.parse().ok()?;
    let traceparent = parts.next().filter(|t| !t.is_empty()).map(str::to_owned);
    Some(Due {
        ticket,
        kind,
        due_ms,
        record: Record {
            version,
            unit,
            deadline_ms,
            traceparent,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_records_parse_back() {
        let t = TicketId::new();
        let v = EventId::new();
        let m = member(&t, TimerKind::SecondOverdue);
        assert_eq!(m.len(), 17);
        let rec = format!(
            "{}|010|city-water|1764000000000|00-abc-def-01",
            version_hex(&v)
        );
        let d = parse_due(&m, b"1764000000123", rec.as_bytes()).unwrap();
        assert_eq!(d.ticket, t);
        assert_eq!(d.kind, TimerKind::SecondOverdue);
        assert_eq!(d.due_ms, 1_764_000_000_123);
        assert_eq!(d.record.version, v);
        assert_eq!(d.record.unit.as_str(), "city-water");
        assert_eq!(d.record.traceparent.as_deref(), Some("00-abc-def-01"));
        assert!(parse_due(&m[..10], b"1", rec.as_bytes()).is_none());
    }
}

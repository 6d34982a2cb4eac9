//! Timers in Redis, built for speed, for memory, and for Redis Cluster.
//!
//! Tickets are spread over `shards`; all keys of a shard share the hash tag
//! `{w:<shard>}`, so every script touches one slot. Per shard:
//!
//! - `due`      sorted set: member = ticket id (16 bytes) + kind (1 byte:
//!   `w` warning, `1` first overdue, `2` second overdue); score = due ms
//! - `claimed`  sorted set: the same members; score = claim expiry ms. A claim
//!   not acknowledged in time (its instance died) is claimed again.
//! - `r:<bucket>` small hashes, ticket id (16 bytes) -> record, one record per
//!   ticket for all its timers. Records are spread over `record_buckets`
//!   buckets so each hash stays small enough for Redis's compact (listpack)
//!   encoding. A record is binary: deadline version (16 bytes), the last 5
//!   bytes of the ticket id, the deadline in ms (6 bytes, big-endian), the
//!   unit code, and optionally a 0 byte and the trace context (25 bytes).
//! - `alive`    a marker; if it is missing, Redis lost its data and the timers
//!   are rebuilt from Kafka
//!
//! Arm, cancel, claim and acknowledge are one script call (one round trip)
//! each; arming many tickets is one call per shard. A timer of a superseded
//! version is removed when the new version is armed; arming a version the
//! record already holds does nothing, so a fired timer is never armed again.

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

/// Bytes of the ticket id that name it in the sorted sets and record hashes
/// (88 random bits); the other 5 live in the record. Short members keep each
/// sorted-set entry in a smaller allocation.
const ID_LEN: usize = 11;

fn field(t: &TicketId) -> &[u8] {
    &t.as_bytes()[..ID_LEN]
}

fn member(ticket: &TicketId, kind: TimerKind) -> Vec<u8> {
    let mut m = field(ticket).to_vec();
    m.push(kind_byte(kind));
    m
}

/// Record buckets per shard.
pub const RECORD_BUCKETS: u16 = 2048;

fn bucket_of(t: &TicketId) -> u16 {
    let b = t.as_bytes();
    u16::from_be_bytes([b[9], b[10]]) % RECORD_BUCKETS
}

/// `00-<trace 32 hex>-<span 16 hex>-<flags 2 hex>` as 25 bytes.
fn compact_traceparent(tp: &str) -> Option<[u8; 25]> {
    let mut parts = tp.split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex = |s: &str, out: &mut [u8]| -> Option<()> {
        if s.len() != out.len() * 2 {
            return None;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(())
    };
    let mut b = [0u8; 25];
    hex(trace, &mut b[..16])?;
    hex(span, &mut b[16..24])?;
    hex(flags, &mut b[24..])?;
    Some(b)
}

fn expand_traceparent(b: &[u8]) -> Option<String> {
    if b.len() != 25 {
        return None;
    }
    let h = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(format!("00-{}-{}-{}", h(&b[..16]), h(&b[16..24]), h(&b[24..])))
}

/// The record's bytes after the version: the rest of the
/// ticket id, the deadline, the unit, the trace context.
fn record_tail(t: &TicketId, r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&t.as_bytes()[ID_LEN..]);
    v.extend_from_slice(&r.deadline_ms.to_be_bytes()[2..]);
    v.extend_from_slice(r.unit.as_str().as_bytes());
    if let Some(tp) = r.traceparent.as_deref().and_then(compact_traceparent) {
        v.push(0);
        v.extend_from_slice(&tp);
    }
    v
}

/// A record and the tail of its ticket id.
fn parse_record(rec: &[u8]) -> Option<(Record, [u8; 16 - ID_LEN])> {
    if rec.len() < 16 + (16 - ID_LEN) + 6 + 1 {
        return None;
    }
    let version = EventId::from_bytes(rec[..16].try_into().ok()?);
    let id_tail: [u8; 16 - ID_LEN] = rec[16..32 - ID_LEN].try_into().ok()?;
    let at = 32 - ID_LEN;
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&rec[at..at + 6]);
    let deadline_ms = i64::from_be_bytes(ms);
    let rest = &rec[at + 6..];
    let (unit, tp) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], expand_traceparent(&rest[i + 1..])),
        None => (rest, None),
    };
    let unit = UnitCode::parse(std::str::from_utf8(unit).ok()?).ok()?;
    Some((Record { version, unit, deadline_ms, traceparent: tp }, id_tail))
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
-- KEYS: due, claimed; ARGV, per ticket: record key, id(11B), record, spec,
-- then (due, member) pairs. The record starts with the deadline version (16
-- bytes). spec is the number of pairs, followed by the bits of the timers that
-- already fired (w=1, 1=2, 2=4) when arming from a rebuild. A ticket whose
-- record already holds this version is left alone: its timers were armed
-- then, and any that are gone have fired. Returns how many timers were armed.
local call, sub = redis.call, string.sub
local due, claimed = KEYS[1], KEYS[2]
local n, i, adds = 0, 1, {}
while i <= #ARGV do
  local key, t, rec, spec = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cnt = tonumber(sub(spec, 1, 1))
  local arm = call('HSETNX', key, t, rec) == 1
  if not arm and sub(call('HGET', key, t), 1, 16) ~= sub(rec, 1, 16) then
    call('ZREM', due, t .. 'w', t .. '1', t .. '2')
    call('ZREM', claimed, t .. 'w', t .. '1', t .. '2')
    call('HSET', key, t, rec)
    arm = true
  end
  if arm then
    if #spec == 1 then
      for j = i + 4, i + 3 + 2 * cnt do adds[#adds + 1] = ARGV[j] end
    else
      local f = tonumber(sub(spec, 2))
      for j = 0, cnt - 1 do
        local m = ARGV[i + 5 + 2 * j]
        local k = sub(m, 12, 12)
        local bit = (k == 'w' and 1) or (k == '1' and 2) or 4
        if math.floor(f / bit) % 2 == 0 then
          adds[#adds + 1] = ARGV[i + 4 + 2 * j]
          adds[#adds + 1] = m
        end
      end
    end
    if #adds >= 4000 then
      n = n + call('ZADD', due, unpack(adds))
      adds = {}
    end
  end
  i = i + 4 + 2 * cnt
end
if #adds > 0 then n = n + call('ZADD', due, unpack(adds)) end
return n";

const CANCEL: &str = r"
-- KEYS: due, claimed, record bucket; ARGV: ticket(16B), forget(0/1)
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
  if rec then redis.call('HSET', KEYS[3], ARGV[1], string.rep('\0', 16) .. string.sub(rec, 17)) end
end
return n";

const CLAIM: &str = r"
-- KEYS: due, claimed; ARGV: now, claim ttl, max, record key prefix, buckets
-- Returns {member, due, record, ...}: claims that expired (an instance died
-- before acknowledging) and timers due by now.
local now = tonumber(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local buckets = tonumber(ARGV[5])
local function record(m)
  local b = (string.byte(m, 10) * 256 + string.byte(m, 11)) % buckets
  return redis.call('HGET', ARGV[4] .. b, string.sub(m, 1, 11))
end
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
for _, m in ipairs(expired) do
  redis.call('ZADD', KEYS[2], until_, m)
  local rec = record(m)
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
      local rec = record(due[i])
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
-- KEYS: claimed; ARGV: members. The timers' events are durable: release the
-- claims. (A fired timer is never armed again: its version's record stays.)
return redis.call('ZREM', KEYS[1], unpack(ARGV))";

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
        let b = ticket.as_bytes();
        u16::from_be_bytes([b[14], b[15]]) % self.shards
    }

    fn key(&self, shard: u16, name: &str) -> String {
        format!("{}{{w:{shard}}}:{name}", self.prefix)
    }

    fn record_prefix(&self, shard: u16) -> String {
        self.key(shard, "r:")
    }

    fn record_key(&self, ticket: &TicketId) -> String {
        format!("{}{}", self.record_prefix(self.shard_of(ticket)), bucket_of(ticket))
    }

    /// The ARM script's arguments for one ticket.
    fn arm_args(&self, ticket: &TicketId, record: &Record, timers: &[Arm], fired: [bool; 3], args: &mut Vec<Vec<u8>>) {
        let fired = u8::from(fired[0]) + 2 * u8::from(fired[1]) + 4 * u8::from(fired[2]);
        let mut value = record.version.as_bytes().to_vec();
        value.extend(record_tail(ticket, record));
        args.push(self.record_key(ticket).into_bytes());
        args.push(field(ticket).to_vec());
        args.push(value);
        // Pairs, then the fired bits only when some fired (a rebuild).
        args.push(if fired == 0 { timers.len().to_string() } else { format!("{}{fired}", timers.len()) }.into_bytes());
        for t in timers {
            args.push(t.due_ms.to_string().into_bytes());
            args.push(member(ticket, t.kind));
        }
    }

    async fn arm_shard(&self, shard: u16, args: Vec<Vec<u8>>) -> Result<u32> {
        let mut inv = self.arm.key(self.key(shard, "due"));
        inv.key(self.key(shard, "claimed"));
        for a in args {
            inv.arg(a);
        }
        Ok(inv.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Arms the timers of a ticket's deadline version. A new version replaces
    /// the old one's timers; for the same version, timers that fired or are
    /// claimed are left alone. `fired` says which of a *new* version's timers
    /// already fired (a rebuild from Kafka), as `[warning, first, second]`.
    pub async fn arm(&self, ticket: &TicketId, record: &Record, timers: &[Arm], fired: [bool; 3]) -> Result<u32> {
        let mut args = Vec::with_capacity(5 + 2 * timers.len());
        self.arm_args(ticket, record, timers, fired, &mut args);
        self.arm_shard(self.shard_of(ticket), args).await
    }

    /// Arms many tickets' timers: one script call per shard.
    pub async fn arm_many(&self, items: &[(TicketId, Record, Vec<Arm>)]) -> Result<u32> {
        let mut by_shard: std::collections::BTreeMap<u16, Vec<Vec<u8>>> = std::collections::BTreeMap::new();
        for (t, r, a) in items {
            self.arm_args(t, r, a, [false; 3], by_shard.entry(self.shard_of(t)).or_default());
        }
        let calls = by_shard.into_iter().map(|(s, args)| self.arm_shard(s, args));
        let mut n = 0;
        for r in futures::future::join_all(calls).await {
            n += r?;
        }
        Ok(n)
    }

    /// Removes a ticket's timers (completed, returned, whistled). With
    /// `forget`, the record goes too (closed).
    pub async fn cancel(&self, ticket: &TicketId, forget: bool) -> Result<u32> {
        let s = self.shard_of(ticket);
        Ok(self
            .cancel
            .key(self.key(s, "due"))
            .key(self.key(s, "claimed"))
            .key(self.record_key(ticket))
            .arg(field(ticket))
            .arg(if forget { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// The unit of the ticket's last assignment, if known.
    pub async fn record_unit(&self, ticket: &TicketId) -> Result<Option<UnitCode>> {
        let rec: Option<Vec<u8>> =
            redis::cmd("HGET").arg(self.record_key(ticket)).arg(field(ticket)).query_async(&mut self.conn.clone()).await?;
        Ok(rec.and_then(|r| parse_record(&r)).map(|(r, _)| r.unit))
    }

    /// Claims up to `max` timers of one shard due at `now_ms` (or whose claim
    /// expired), for `ttl_ms`.
    pub async fn claim(&self, shard: u16, now_ms: i64, ttl_ms: i64, max: usize) -> Result<Vec<Due>> {
        let raw: Vec<Vec<u8>> = self
            .claim
            .key(self.key(shard, "due"))
            .key(self.key(shard, "claimed"))
            .arg(now_ms)
            .arg(ttl_ms)
            .arg(max)
            .arg(self.record_prefix(shard))
            .arg(RECORD_BUCKETS)
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
        for d in done {
            inv.arg(member(&d.ticket, d.kind));
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
            let _: () = redis::cmd("SET").arg(self.key(s, "alive")).arg(1).query_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// Outstanding (due or claimed) timers of every shard.
    pub async fn outstanding(&self) -> Result<u64> {
        let mut n = 0;
        for s in 0..self.shards {
            for name in ["due", "claimed"] {
                let c: u64 = redis::cmd("ZCARD").arg(self.key(s, name)).query_async(&mut self.conn.clone()).await?;
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
        for k in [TimerKind::Warning, TimerKind::FirstOverdue, TimerKind::SecondOverdue] {
            let score: Option<f64> =
                redis::cmd("ZSCORE").arg(self.key(s, "due")).arg(member(ticket, k)).query_async(&mut self.conn.clone()).await?;
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
        for k in [TimerKind::Warning, TimerKind::FirstOverdue, TimerKind::SecondOverdue] {
            for name in ["due", "claimed"] {
                let score: Option<f64> =
                    redis::cmd("ZSCORE").arg(self.key(s, name)).arg(member(ticket, k)).query_async(&mut self.conn.clone()).await?;
                if score.is_some() {
                    kinds.push(k);
                }
            }
        }
        Ok(kinds)
    }
}

fn parse_due(m: &[u8], due: &[u8], rec: &[u8]) -> Option<Due> {
    if m.len() != ID_LEN + 1 {
        return None;
    }
    let kind = kind_of(m[ID_LEN])?;
    let due_ms: i64 = std::str::from_utf8(due).ok()?.parse::<f64>().ok()? as i64;
    let (record, id_tail) = parse_record(rec)?;
    let mut id = [0u8; 16];
    id[..ID_LEN].copy_from_slice(&m[..ID_LEN]);
    id[ID_LEN..].copy_from_slice(&id_tail);
    Some(Due { ticket: TicketId::from_bytes(id), kind, due_ms, record })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_records_parse_back() {
        let t = TicketId::new();
        let r = Record {
            version: EventId::new(),
            unit: UnitCode::parse("city-water").unwrap(),
            deadline_ms: 1_764_000_000_000,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let m = member(&t, TimerKind::SecondOverdue);
        assert_eq!(m.len(), 12);
        let mut rec = r.version.as_bytes().to_vec();
        rec.extend(record_tail(&t, &r));
        assert!(rec.len() <= 64, "fits Redis's compact hash encoding: {}", rec.len());
        let d = parse_due(&m, b"1764000000123", &rec).unwrap();
        assert_eq!((d.ticket, d.kind, d.due_ms), (t, TimerKind::SecondOverdue, 1_764_000_000_123));
        assert_eq!(d.record, r);
        assert!(parse_due(&m[..10], b"1", &rec).is_none());
        let plain = Record { traceparent: None, ..r.clone() };
        let mut rec = plain.version.as_bytes().to_vec();
        rec.extend(record_tail(&t, &plain));
        assert_eq!(parse_record(&rec).map(|(r, _)| r), Some(plain));
    }
}

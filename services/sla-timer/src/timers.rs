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
//! - `alive`    a marker (`whistle_runtime::marker`); if it is missing or
//!   was set by another run of the server, Redis may have lost data and the
//!   timers are rebuilt from Kafka
//!
//! Arm, cancel, claim and acknowledge are one script call (one round trip)
//! each; arming many tickets is one call per shard. A timer of a superseded
//! version is removed when the new version is armed; arming a version the
//! record already holds does nothing, so a fired timer is never armed again.

use redis::aio::ConnectionLike;
use whistle_domain::{TicketId, TimerKind, UnitCode};

use crate::Result;

mod record;
mod scripts;

use record::*;
pub use record::{Arm, Due, RECORD_BUCKETS, Record};
use scripts::*;

/// A Redis connection the timers can use: one server or a cluster.
pub trait Conn: ConnectionLike + Clone + Send + Sync + 'static {}
impl<T: ConnectionLike + Clone + Send + Sync + 'static> Conn for T {}

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
            next: redis::Script::new(&NEXT.replace("__ALIVE__", &whistle_runtime::marker::alive_lua("KEYS[3]"))),
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
            whistle_runtime::marker::mark(&mut self.conn.clone(), &self.key(s, "alive")).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use whistle_domain::EventId;

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

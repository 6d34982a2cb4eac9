//! The compact binary form of a ticket's timers in Redis: the member of a
//! due timer (ticket id and kind) and the record its timers share (deadline
//! version, unit, deadline, trace context), and parsing them back.

use whistle_domain::{EventId, TicketId, TimerKind, UnitCode};

pub(crate) fn kind_byte(k: TimerKind) -> u8 {
    match k {
        TimerKind::Warning => b'w',
        TimerKind::FirstOverdue => b'1',
        TimerKind::SecondOverdue => b'2',
    }
}

pub(crate) fn kind_of(b: u8) -> Option<TimerKind> {
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
pub(crate) const ID_LEN: usize = 11;

pub(crate) fn field(t: &TicketId) -> &[u8] {
    &t.as_bytes()[..ID_LEN]
}

pub(crate) fn member(ticket: &TicketId, kind: TimerKind) -> Vec<u8> {
    let mut m = field(ticket).to_vec();
    m.push(kind_byte(kind));
    m
}

/// Record buckets per shard.
pub const RECORD_BUCKETS: u16 = 2048;

pub(crate) fn bucket_of(t: &TicketId) -> u16 {
    let b = t.as_bytes();
    u16::from_be_bytes([b[9], b[10]]) % RECORD_BUCKETS
}

/// `00-<trace 32 hex>-<span 16 hex>-<flags 2 hex>` as 25 bytes.
pub(crate) fn compact_traceparent(tp: &str) -> Option<[u8; 25]> {
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

pub(crate) fn expand_traceparent(b: &[u8]) -> Option<String> {
    if b.len() != 25 {
        return None;
    }
    let h = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(format!("00-{}-{}-{}", h(&b[..16]), h(&b[16..24]), h(&b[24..])))
}

/// The record's bytes after the version: the rest of the
/// ticket id, the deadline, the unit, the trace context.
pub(crate) fn record_tail(t: &TicketId, r: &Record) -> Vec<u8> {
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
pub(crate) fn parse_record(rec: &[u8]) -> Option<(Record, [u8; 16 - ID_LEN])> {
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

pub(crate) fn parse_due(m: &[u8], due: &[u8], rec: &[u8]) -> Option<Due> {
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

//! Identifiers: the internal ticket id, the number a citizen is told, event ids.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::Error;

/// Internal identity of a ticket; the Kafka key of all its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(Uuid);

impl TicketId {
    pub fn new() -> Self {
        TicketId(Uuid::new_v4())
    }

    /// The 16 bytes of the id (compact keys).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        TicketId(Uuid::from_bytes(b))
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        Uuid::parse_str(s).map(TicketId).map_err(|e| Error::invalid("ticket_id", format!("not a ticket id: {e}")))
    }
}

impl Default for TicketId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identity of one event. Events derived from another event get a
/// deterministic id ([`EventId::derived`]) so that reprocessing a redelivered
/// input produces the same output id and downstream consumers can dedupe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn new() -> Self {
        EventId(Uuid::new_v4())
    }

    /// The id of the event that `purpose` derives from `source`.
    pub fn derived(source: &EventId, purpose: &str) -> Self {
        EventId(Uuid::new_v5(&source.0, purpose.as_bytes()))
    }

    /// A deterministic id from a name (e.g. a timer's identity).
    pub fn from_name(name: &str) -> Self {
        EventId(Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        EventId(Uuid::from_bytes(b))
    }

    /// 32 hex digits, no hyphens (compact keys).
    pub fn simple(&self) -> String {
        self.0.simple().to_string()
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        Uuid::parse_str(s).map(EventId).map_err(|e| Error::invalid("event_id", format!("not an event id: {e}")))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number a citizen is told: `YYYYMMDD` followed by a six-digit (or
/// longer) daily sequence, all digits so it can be read over the phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketNumber(String);

impl TicketNumber {
    pub fn new(date: time::Date, sequence: u64) -> Self {
        TicketNumber(format!("{:04}{:02}{:02}{:06}", date.year(), u8::from(date.month()), date.day(), sequence))
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        if s.len() >= 14 && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TicketNumber(s.to_owned()))
        } else {
            Err(Error::invalid("ticket_number", "must be 14 to 20 digits"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The date part, `YYYYMMDD`.
    pub fn day(&self) -> &str {
        &self.0[..8]
    }

    /// The daily sequence part.
    pub fn sequence(&self) -> u64 {
        self.0[8..].parse().unwrap_or(0)
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn ticket_numbers_are_dated_digits() {
        let n = TicketNumber::new(date!(2026 - 11 - 22), 42);
        assert_eq!(n.as_str(), "20261122000042");
        assert_eq!(n.sequence(), 42);
        assert_eq!(TicketNumber::parse("20261122000042").unwrap(), n);
        assert!(TicketNumber::parse("2026-11-22").is_err());
    }

    #[test]
    fn derived_event_ids_are_deterministic() {
        let src = EventId::new();
        assert_eq!(EventId::derived(&src, "classified"), EventId::derived(&src, "classified"));
        assert_ne!(EventId::derived(&src, "classified"), EventId::derived(&src, "dispatched"));
    }
}

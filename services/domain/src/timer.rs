//! Deadline timers: which ones an assignment has and how one is named, so that
//! a timer of a superseded deadline can never be mistaken for the current one.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Error, EventId, Result, TicketId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A share of the span has passed: desks are warned.
    Warning,
    /// The deadline passed: reminder to the unit.
    FirstOverdue,
    /// The deadline passed again by the same span: urging letter.
    SecondOverdue,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Warning => "warning",
            TimerKind::FirstOverdue => "first_overdue",
            TimerKind::SecondOverdue => "second_overdue",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "warning" => Ok(TimerKind::Warning),
            "first_overdue" => Ok(TimerKind::FirstOverdue),
            "second_overdue" => Ok(TimerKind::SecondOverdue),
            other => Err(Error::invalid("timer.kind", format!("unknown timer kind {other:?}"))),
        }
    }
}

/// One timer: a ticket, the version of its deadline (the id of the event that
/// set it) and the kind. Written as `ticket/version/kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    pub ticket: TicketId,
    pub deadline_version: EventId,
    pub kind: TimerKind,
}

impl TimerKey {
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.split('/');
        let (Some(t), Some(v), Some(k), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Error::invalid("timer", format!("{s:?} is not ticket/version/kind")));
        };
        Ok(TimerKey { ticket: TicketId::parse(t)?, deadline_version: EventId::parse(v)?, kind: TimerKind::parse(k)? })
    }

    /// The id of the event this timer produces when it fires: the same every
    /// time, so a timer that fires twice after a crash is deduplicated.
    pub fn fired_event_id(&self) -> EventId {
        EventId::from_name(&self.to_string())
    }
}

impl fmt::Display for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.ticket, self.deadline_version, self.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip_and_fire_deterministically() {
        let k = TimerKey { ticket: TicketId::new(), deadline_version: EventId::new(), kind: TimerKind::FirstOverdue };
        assert_eq!(TimerKey::parse(&k.to_string()).unwrap(), k);
        assert_eq!(k.fired_event_id(), k.fired_event_id());
        let other = TimerKey { kind: TimerKind::SecondOverdue, ..k };
        assert_ne!(k.fired_event_id(), other.fired_event_id());
        assert!(TimerKey::parse("a/b").is_err());
    }
}

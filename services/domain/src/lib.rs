//! Whistle's domain model: what a citizen's request is, the ticket that records
//! it, its lifecycle from intake to closure, the taxonomy the cities use, and
//! how deadlines are counted. Plain data and pure functions only: no I/O, no
//! clocks other than the injected [`Clock`].

pub mod access;
pub mod calendar;
pub mod city;
pub mod clock;
pub mod event;
pub mod figures;
pub mod hot;
pub mod ids;
pub mod knowledge;
pub mod privacy;
pub mod queue;
pub mod reason;
pub mod request;
pub mod revisit;
pub mod taxonomy;
pub mod ticket;
pub mod timer;

pub use calendar::{DeadlinePolicy, Span, WorkCalendar};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{
    Actor, ActorKind, Alternative, Event, EventKind, ExtensionDecision, KnowledgeHit, OverdueLevel, Resolution, RevisitOutcome,
};
pub use ids::{EventId, TicketId, TicketNumber};
pub use reason::ReasonText;
pub use request::{Channel, Contact, GeoPoint, Language, Location, PhoneNumber, Request, RequestFields, Sensitive};
pub use taxonomy::{Category, Jurisdiction, PlatformId, Tier, UnitCode, Urgency, WhistleLevel};
pub use ticket::{Assignment, Deadline, QueueReason, Ticket, TicketState};
pub use timer::{TimerKey, TimerKind};

/// Everything that can go wrong in the domain: a value that does not parse,
/// or an action the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field of a request or config value is invalid.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A city configuration entry is wrong. `code` names the entry (the
    /// second one for a duplicate), so a loader can point at its line.
    #[error("{entry}: {reason}")]
    City { entry: &'static str, code: String, duplicate: bool, reason: String },
    /// The ticket's state does not allow this event.
    #[error("ticket {ticket} is {state}; cannot apply {event}: {rule}")]
    Transition { ticket: TicketId, state: &'static str, event: &'static str, rule: &'static str },
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid { field, reason: reason.into() }
    }

    /// The field a validation error names, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::City { entry, .. } => Some(entry),
            Error::Transition { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Events: the durable record of everything that happens to a ticket. A
//! ticket is the fold of its events ([`crate::Ticket::apply`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Category, Deadline, EventId, Jurisdiction, Language, PlatformId, Request, TicketId, TicketNumber, UnitCode, Urgency, WhistleLevel,
};

/// Current version of the event schema (the protobuf envelope's
/// `schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub ticket_id: TicketId,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A Whistle service acting by rule.
    System,
    /// An operator of a command platform's desk.
    Operator,
    /// A responsible unit.
    Unit,
    /// The citizen (e.g. answering the revisit by SMS).
    Citizen,
    /// A revisit agent.
    Agent,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::System => "system",
            ActorKind::Operator => "operator",
            ActorKind::Unit => "unit",
            ActorKind::Citizen => "citizen",
            ActorKind::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "system" => Ok(ActorKind::System),
            "operator" => Ok(ActorKind::Operator),
            "unit" => Ok(ActorKind::Unit),
            "citizen" => Ok(ActorKind::Citizen),
            "agent" => Ok(ActorKind::Agent),
            other => Err(crate::Error::invalid("actor.kind", format!("unknown actor kind {other:?}"))),
        }
    }
}

/// Who did it: the audit trail's "by whom".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn system(service: &str) -> Self {
        Actor { kind: ActorKind::System, id: service.to_owned() }
    }

    pub fn unit(unit: &UnitCode) -> Self {
        Actor { kind: ActorKind::Unit, id: unit.to_string() }
    }

    pub fn agent(id: &str) -> Self {
        Actor { kind: ActorKind::Agent, id: id.to_owned() }
    }

    pub fn citizen() -> Self {
        Actor { kind: ActorKind::Citizen, id: "citizen".to_owned() }
    }

    pub fn operator(id: &str) -> Self {
        Actor { kind: ActorKind::Operator, id: id.to_owned() }
    }
}

/// First overdue: a reminder to the unit. Second overdue: an urging letter,
/// the leader in charge, and the ticket becomes supervised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverdueLevel {
    First,
    Second,
}

impl OverdueLevel {
    pub fn number(self) -> u32 {
        match self {
            OverdueLevel::First => 1,
            OverdueLevel::Second => 2,
        }
    }

    pub fn from_number(n: u32) -> crate::Result<Self> {
        match n {
            1 => Ok(OverdueLevel::First),
            2 => Ok(OverdueLevel::Second),
            other => Err(crate::Error::invalid("overdue.level", format!("{other} is not 1 or 2"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionDecision {
    Granted { deadline: Deadline, note: String },
    Refused { note: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisitOutcome {
    Satisfied,
    Unsatisfied,
    Unreachable,
}

impl RevisitOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisitOutcome::Satisfied => "satisfied",
            RevisitOutcome::Unsatisfied => "unsatisfied",
            RevisitOutcome::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "satisfied" => Ok(RevisitOutcome::Satisfied),
            "unsatisfied" => Ok(RevisitOutcome::Unsatisfied),
            "unreachable" => Ok(RevisitOutcome::Unreachable),
            other => Err(crate::Error::invalid("outcome", format!("{other:?} is not satisfied, unsatisfied or unreachable"))),
        }
    }
}

/// How a ticket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A consultation answered at once, no dispatch.
    Answered,
    /// Revisited and the citizen was satisfied.
    Satisfied,
    /// The citizen could not be reached for the revisit after every try.
    Unreachable,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Answered => "answered",
            Resolution::Satisfied => "satisfied",
            Resolution::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "answered" => Ok(Resolution::Answered),
            "satisfied" => Ok(Resolution::Satisfied),
            "unreachable" => Ok(Resolution::Unreachable),
            other => Err(crate::Error::invalid("resolution", format!("{other:?} is not answered, satisfied or unreachable"))),
        }
    }
}

/// A knowledge-base entry a consultation matched, with its score (0 to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeHit {
    pub id: String,
    pub score: f32,
}

/// A category the classifier also considered, with its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub category: Category,
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Intake registered the request and issued the ticket number.
    Received {
        number: TicketNumber,
        request: Request,
    },
    /// Category, urgency, whistle level, jurisdiction and language were set
    /// by the classifier, with how sure it was. A `triage` ticket is not
    /// dispatched automatically: it waits on the city desk's triage queue.
    Classified {
        category: Category,
        urgency: Urgency,
        whistle_level: WhistleLevel,
        jurisdiction: Jurisdiction,
        /// Why: the signals, places and history that decided.
        matched_rules: Vec<String>,
        language: Language,
        /// The model's probability of `category`, 0 to 1.
        confidence: f32,
        /// The next most likely categories, most likely first.
        runners_up: Vec<Alternative>,
        triage: bool,
        /// The knowledge-base entries a consultation matched, best first:
        /// shown to the desk as suggested answers.
        #[serde(default)]
        answers: Vec<KnowledgeHit>,
        /// Answered at once from the first of `answers`: the `answered`
        /// event follows, and nobody dispatches the ticket.
        #[serde(default)]
        answered: bool,
    },
    /// A desk operator corrected the classification; the ticket is routed
    /// again from the top by the new one.
    Reclassified {
        category: Category,
        urgency: Urgency,
        whistle_level: WhistleLevel,
        jurisdiction: Jurisdiction,
        reason: String,
    },
    /// A consultation answered at once from the knowledge base.
    Answered {
        answer: String,
        knowledge_id: String,
    },
    /// Sent to a unit with a deadline.
    Dispatched {
        platform: PlatformId,
        unit: UnitCode,
        deadline: Deadline,
        automatic: bool,
    },
    /// Put on a platform's queue (routing, or a tier handing down).
    Delegated {
        from: PlatformId,
        to: PlatformId,
        reason: String,
    },
    /// The unit confirmed it has the ticket.
    Acknowledged,
    /// The unit sent a misrouted ticket back to its platform.
    Returned {
        reason: String,
    },
    /// The platform called the tier above in.
    Whistled {
        from: PlatformId,
        to: PlatformId,
        reason: String,
    },
    /// A department answered a whistle and takes its part.
    ReportedIn {
        unit: UnitCode,
    },
    ExtensionRequested {
        reason: String,
        #[serde(with = "time::serde::rfc3339")]
        requested_due: OffsetDateTime,
    },
    ExtensionDecided(ExtensionDecision),
    /// A share of the span has passed (for desks).
    DeadlineWarning {
        deadline_version: EventId,
    },
    Overdue {
        level: OverdueLevel,
        deadline_version: EventId,
        #[serde(with = "time::serde::rfc3339")]
        due_at: OffsetDateTime,
        unit: UnitCode,
    },
    /// On the supervision list.
    Supervised {
        reason: String,
    },
    /// The unit reported the result.
    Completed {
        result: String,
    },
    /// One revisit attempt and its outcome.
    RevisitRecorded {
        outcome: RevisitOutcome,
        reason: String,
    },
    /// Unsatisfied: back to the unit for rework, with the deadline of
    /// [`DeadlinePolicy::rework`](crate::DeadlinePolicy::rework).
    Reopened {
        reason: String,
        deadline: Deadline,
    },
    Closed {
        resolution: Resolution,
    },
}

impl EventKind {
    /// A classification made with full confidence (no runners-up, no
    /// triage), in the ticket's language: what scripted events use (tools,
    /// tests, imports from another system).
    pub fn classified_surely(
        category: Category,
        urgency: Urgency,
        whistle_level: WhistleLevel,
        jurisdiction: Jurisdiction,
        language: Language,
    ) -> Self {
        EventKind::Classified {
            category,
            urgency,
            whistle_level,
            jurisdiction,
            matched_rules: Vec::new(),
            language,
            confidence: 1.0,
            runners_up: Vec::new(),
            triage: false,
            answers: Vec::new(),
            answered: false,
        }
    }

    /// The event's name as used on the wire, in logs and in notification
    /// templates.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Received { .. } => "received",
            EventKind::Classified { .. } => "classified",
            EventKind::Reclassified { .. } => "reclassified",
            EventKind::Answered { .. } => "answered",
            EventKind::Dispatched { .. } => "dispatched",
            EventKind::Delegated { .. } => "delegated",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Returned { .. } => "returned",
            EventKind::Whistled { .. } => "whistled",
            EventKind::ReportedIn { .. } => "reported_in",
            EventKind::ExtensionRequested { .. } => "extension_requested",
            EventKind::ExtensionDecided(_) => "extension_decided",
            EventKind::DeadlineWarning { .. } => "deadline_warning",
            EventKind::Overdue { .. } => "overdue",
            EventKind::Supervised { .. } => "supervised",
            EventKind::Completed { .. } => "completed",
            EventKind::RevisitRecorded { .. } => "revisit_recorded",
            EventKind::Reopened { .. } => "reopened",
            EventKind::Closed { .. } => "closed",
        }
    }
}

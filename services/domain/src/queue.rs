//! What waits on a platform desk, and which actions a caller can take on a
//! ticket now. The queue is the desk's work list: a ticket is on exactly one
//! platform's queue while that platform must look at it, and on none while a
//! unit works it on time or after it is completed.

use time::OffsetDateTime;

use crate::access::{Caller, DeskAction, authorize};
use crate::event::{Actor, Event, EventKind, ExtensionDecision};
use crate::{Deadline, EventId, PlatformId, QueueReason, Ticket, TicketState, UnitCode};

/// Why a ticket is on a desk's queue, most pressing last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueGroup {
    /// The classifier was unsure: check the classification.
    Triage,
    /// Handed down from the platform above.
    Delegated,
    /// Whistled up from the platform below.
    Whistled,
    /// Sent back by the unit it was dispatched to.
    Returned,
    /// Dispatched, and the unit has not acknowledged it yet.
    Unacknowledged,
    /// The deadline approaches.
    Warned,
    /// Past its deadline.
    Overdue,
    /// The unit asks for more time: the desk decides.
    Extension,
    /// Acknowledged and on time: on the unit's own list only, never a desk's.
    InHand,
}

impl QueueGroup {
    pub const ALL: [QueueGroup; 9] = [
        QueueGroup::Triage,
        QueueGroup::Delegated,
        QueueGroup::Whistled,
        QueueGroup::Returned,
        QueueGroup::Unacknowledged,
        QueueGroup::Warned,
        QueueGroup::Overdue,
        QueueGroup::Extension,
        QueueGroup::InHand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueGroup::Triage => "triage",
            QueueGroup::Delegated => "delegated",
            QueueGroup::Whistled => "whistled",
            QueueGroup::Returned => "returned",
            QueueGroup::Unacknowledged => "unacknowledged",
            QueueGroup::Warned => "warned",
            QueueGroup::Overdue => "overdue",
            QueueGroup::Extension => "extension",
            QueueGroup::InHand => "in_hand",
        }
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        QueueGroup::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| crate::Error::invalid("group", format!("unknown queue group {s:?}")))
    }
}

/// A ticket's place on a desk's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub platform: PlatformId,
    pub group: QueueGroup,
    /// What the queue is sorted by: the deadline of a ticket in a unit's
    /// hands; for one waiting to be dispatched, when it was received.
    pub sort_at: OffsetDateTime,
}

impl Ticket {
    /// The platform holding this open ticket (on its desk or with one of
    /// its units), sorted by the deadline, else when it was received.
    pub fn held(&self) -> Option<(PlatformId, OffsetDateTime)> {
        match &self.state {
            TicketState::Queued { platform, .. } => Some((platform.clone(), self.received_at)),
            TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some((a.platform.clone(), a.deadline.due_at)),
            TicketState::Received | TicketState::Classified | TicketState::Completed { .. } | TicketState::Closed { .. } => None,
        }
    }

    /// The unit working this ticket, and where it stands on that unit's
    /// list (sorted by the deadline): from dispatch until it is completed.
    pub fn work(&self) -> Option<(UnitCode, QueueGroup, OffsetDateTime)> {
        let a = self.state.open_assignment()?;
        let group = match self.waiting() {
            Some(w) => w.group,
            None => QueueGroup::InHand,
        };
        Some((a.unit.clone(), group, a.deadline.due_at))
    }

    /// The platform desk this ticket waits on, and why; `None` while it
    /// needs nobody at a desk (being classified, in a unit's hands on time,
    /// completed, closed).
    pub fn waiting(&self) -> Option<Waiting> {
        let queued = |platform: &PlatformId, group| Waiting { platform: platform.clone(), group, sort_at: self.received_at };
        match &self.state {
            TicketState::Queued { platform, reason } => Some(queued(
                platform,
                match reason {
                    QueueReason::Triage => QueueGroup::Triage,
                    QueueReason::Delegated { .. } => QueueGroup::Delegated,
                    QueueReason::Whistled { .. } => QueueGroup::Whistled,
                    QueueReason::Returned { .. } => QueueGroup::Returned,
                },
            )),
            TicketState::Assigned(a) | TicketState::Acknowledged(a) => {
                let acknowledged = matches!(self.state, TicketState::Acknowledged(_));
                let group = if a.extension_requested {
                    QueueGroup::Extension
                } else if a.overdue.is_some() {
                    QueueGroup::Overdue
                } else if a.warned {
                    QueueGroup::Warned
                } else if !acknowledged {
                    QueueGroup::Unacknowledged
                } else {
                    return None;
                };
                Some(Waiting { platform: a.platform.clone(), group, sort_at: a.deadline.due_at })
            }
            TicketState::Received | TicketState::Classified | TicketState::Completed { .. } | TicketState::Closed { .. } => None,
        }
    }
}

/// One thing a caller can do to a ticket at a desk. `Delegate` is a
/// dispatch down a tier; the rest are the desk actions of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    Dispatch,
    Delegate,
    Reclassify,
    Whistle,
    Supervise,
    DecideExtension,
    Acknowledge,
    Return,
    RequestExtension,
    Complete,
    ReportIn,
}

impl Offer {
    pub const ALL: [Offer; 11] = [
        Offer::Dispatch,
        Offer::Delegate,
        Offer::Reclassify,
        Offer::Whistle,
        Offer::Supervise,
        Offer::DecideExtension,
        Offer::Acknowledge,
        Offer::Return,
        Offer::RequestExtension,
        Offer::Complete,
        Offer::ReportIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Offer::Dispatch => "dispatch",
            Offer::Delegate => "delegate",
            Offer::Reclassify => "reclassify",
            Offer::Whistle => "whistle",
            Offer::Supervise => "supervise",
            Offer::DecideExtension => "decide_extension",
            Offer::Acknowledge => "acknowledge",
            Offer::Return => "return",
            Offer::RequestExtension => "request_extension",
            Offer::Complete => "complete",
            Offer::ReportIn => "report_in",
        }
    }

    pub fn action(self) -> DeskAction {
        match self {
            Offer::Dispatch | Offer::Delegate => DeskAction::Dispatch,
            Offer::Reclassify => DeskAction::Reclassify,
            Offer::Whistle => DeskAction::Whistle,
            Offer::Supervise => DeskAction::Supervise,
            Offer::DecideExtension => DeskAction::DecideExtension,
            Offer::Acknowledge => DeskAction::Acknowledge,
            Offer::Return => DeskAction::Return,
            Offer::RequestExtension => DeskAction::RequestExtension,
            Offer::Complete => DeskAction::Complete,
            Offer::ReportIn => DeskAction::ReportIn,
        }
    }
}

/// Where the offers are asked for: the platform whose desk answers, the
/// tiers around it, and how to find a unit's platform.
pub struct DeskPlace<'a> {
    pub platform: &'a PlatformId,
    pub parent: Option<PlatformId>,
    pub children: Vec<PlatformId>,
    pub units: Vec<UnitCode>,
    pub unit_platform: &'a dyn Fn(&UnitCode) -> Option<PlatformId>,
}

/// The actions `caller` can take on `ticket` at this desk now: allowed by
/// the access rules, and by the lifecycle (tried on a copy of the ticket
/// with the event the action would record). The desk still checks each
/// call itself; this is what a console offers.
pub fn offers(caller: &Caller, ticket: &Ticket, place: &DeskPlace<'_>, now: OffsetDateTime) -> Vec<Offer> {
    if ticket.state.platform().is_some_and(|held| held != place.platform) {
        return Vec::new();
    }
    let probe_deadline = Deadline { due_at: now, second_due_at: now, warn_at: None, span: time::Duration::ZERO, version: EventId::new() };
    Offer::ALL
        .into_iter()
        .filter(|offer| authorize(caller, offer.action(), ticket, place.unit_platform).is_ok())
        .filter(|offer| {
            let kind = match offer {
                Offer::Dispatch => match place.units.first() {
                    Some(unit) => EventKind::Dispatched {
                        platform: place.platform.clone(),
                        unit: unit.clone(),
                        deadline: probe_deadline,
                        automatic: false,
                    },
                    None => return false,
                },
                Offer::Delegate => match place.children.first() {
                    Some(to) => EventKind::Delegated { from: place.platform.clone(), to: to.clone(), reason: String::new() },
                    None => return false,
                },
                Offer::Whistle => match &place.parent {
                    Some(to) => EventKind::Whistled { from: place.platform.clone(), to: to.clone(), reason: String::new() },
                    None => return false,
                },
                Offer::Reclassify => match &ticket.classification {
                    Some(c) => EventKind::Reclassified {
                        category: c.category,
                        urgency: c.urgency,
                        whistle_level: c.whistle_level,
                        jurisdiction: c.jurisdiction.clone(),
                        reason: String::new(),
                    },
                    None => return false,
                },
                Offer::Supervise => EventKind::Supervised { reason: String::new() },
                Offer::DecideExtension => EventKind::ExtensionDecided(ExtensionDecision::Refused { note: String::new() }),
                Offer::Acknowledge => EventKind::Acknowledged,
                Offer::Return => EventKind::Returned { reason: String::new() },
                Offer::RequestExtension => EventKind::ExtensionRequested { reason: String::new(), requested_due: now },
                Offer::Complete => EventKind::Completed { result: String::new() },
                Offer::ReportIn => match caller {
                    Caller::Unit(unit) => EventKind::ReportedIn { unit: unit.clone() },
                    Caller::Platform(_) | Caller::Agent(_) => return false,
                },
            };
            let probe = Event { id: EventId::new(), ticket_id: ticket.id, occurred_at: now, actor: Actor::system("offers"), kind };
            ticket.clone().apply(&probe).is_ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Category, Contact, Jurisdiction, Language, Location, Request, TicketId, TicketNumber, Urgency, WhistleLevel};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

    fn ev(t: &Ticket, kind: EventKind) -> Event {
        Event { id: EventId::new(), ticket_id: t.id, occurred_at: NOW, actor: Actor::system("t"), kind }
    }

    fn street() -> PlatformId {
        PlatformId::parse("street:xc-xinjiekou").unwrap()
    }

    fn queued_at_street() -> Ticket {
        let request = Request::parse("phone", "", "晚上施工噪音", Location::default(), Contact::default(), "").unwrap();
        let id = TicketId::new();
        let received = Event {
            id: EventId::new(),
            ticket_id: id,
            occurred_at: NOW,
            actor: Actor::system("t"),
            kind: EventKind::Received { number: TicketNumber::parse("20261123000001").unwrap(), request },
        };
        let mut t = Ticket::open(&received).unwrap();
        let c =
            EventKind::classified_surely(Category::Noise, Urgency::Ordinary, WhistleLevel::Ordinary, Jurisdiction::default(), Language::Zh);
        t.apply(&ev(&t, c)).unwrap();
        let d = ev(&t, EventKind::Delegated { from: PlatformId::City, to: street(), reason: "属地".into() });
        t.apply(&d).unwrap();
        t
    }

    fn place<'a>(platform: &'a PlatformId, unit_platform: &'a dyn Fn(&UnitCode) -> Option<PlatformId>) -> DeskPlace<'a> {
        DeskPlace {
            platform,
            parent: Some(PlatformId::parse("county:xicheng").unwrap()),
            children: Vec::new(),
            units: vec![UnitCode::parse("xc-xinjiekou-office").unwrap()],
            unit_platform,
        }
    }

    #[test]
    fn a_ticket_waits_on_one_desk_for_the_reason_its_state_gives() {
        let mut t = queued_at_street();
        let w = t.waiting().unwrap();
        assert_eq!((w.platform.clone(), w.group), (street(), QueueGroup::Delegated));
        let due = datetime!(2026-11-30 18:00 UTC);
        let deadline = Deadline { due_at: due, second_due_at: due, warn_at: None, span: time::Duration::DAY, version: EventId::new() };
        let unit = UnitCode::parse("xc-xinjiekou-office").unwrap();
        t.apply(&ev(&t, EventKind::Dispatched { platform: street(), unit, deadline, automatic: false })).unwrap();
        let w = t.waiting().unwrap();
        assert_eq!((w.group, w.sort_at), (QueueGroup::Unacknowledged, due), "sorted by the deadline once dispatched");
        assert_eq!(t.work().map(|w| w.1), Some(QueueGroup::Unacknowledged), "on the unit's list from dispatch");
        t.apply(&ev(&t, EventKind::Acknowledged)).unwrap();
        assert_eq!(t.waiting(), None, "a unit working it on time needs no desk");
        assert_eq!(t.held(), Some((street(), due)), "still open at the street");
        assert_eq!(t.work(), Some((UnitCode::parse("xc-xinjiekou-office").unwrap(), QueueGroup::InHand, due)));
        t.apply(&ev(&t, EventKind::DeadlineWarning { deadline_version: deadline.version })).unwrap();
        assert_eq!(t.waiting().unwrap().group, QueueGroup::Warned);
        t.apply(&ev(&t, EventKind::ExtensionRequested { reason: "材料".into(), requested_due: due })).unwrap();
        assert_eq!(t.waiting().unwrap().group, QueueGroup::Extension);
        t.apply(&ev(&t, EventKind::Completed { result: "已处理".into() })).unwrap();
        assert_eq!(t.waiting(), None);
        assert_eq!(t.work(), None, "off the unit's list once completed");
        assert_eq!(t.held(), None, "no longer open at the platform");
        for g in QueueGroup::ALL {
            assert_eq!(QueueGroup::parse(g.as_str()).unwrap(), g);
        }
    }

    #[test]
    fn a_desk_is_offered_what_its_rules_and_the_lifecycle_allow_and_a_unit_only_its_own() {
        let t = queued_at_street();
        let here = street();
        let office = |_: &UnitCode| Some(street());
        let desk = offers(&Caller::Platform(street()), &t, &place(&here, &office), NOW);
        assert_eq!(desk, vec![Offer::Dispatch, Offer::Reclassify, Offer::Whistle, Offer::Supervise]);
        let other = PlatformId::parse("street:xc-shichahai").unwrap();
        assert!(offers(&Caller::Platform(other.clone()), &t, &place(&other, &office), NOW).is_empty(), "not held there");
        let unit = Caller::Unit(UnitCode::parse("xc-xinjiekou-office").unwrap());
        assert!(offers(&unit, &t, &place(&here, &office), NOW).is_empty(), "not dispatched to it yet");

        let mut t = t;
        let deadline = Deadline { due_at: NOW, second_due_at: NOW, warn_at: None, span: time::Duration::DAY, version: EventId::new() };
        let kind =
            EventKind::Dispatched { platform: street(), unit: UnitCode::parse("xc-xinjiekou-office").unwrap(), deadline, automatic: false };
        t.apply(&ev(&t, kind)).unwrap();
        let got = offers(&unit, &t, &place(&here, &office), NOW);
        assert_eq!(got, vec![Offer::Acknowledge, Offer::Return, Offer::RequestExtension, Offer::Complete, Offer::ReportIn]);
        let desk = offers(&Caller::Platform(street()), &t, &place(&here, &office), NOW);
        assert!(!desk.contains(&Offer::DecideExtension), "no extension asked for");
        assert!(desk.contains(&Offer::Dispatch), "a desk may re-dispatch");
        let agent = Caller::Agent("a1".into());
        assert!(offers(&agent, &t, &place(&here, &office), NOW).is_empty());
    }
}

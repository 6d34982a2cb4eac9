//! Who may read or act on a ticket at a desk. Every desk caller is bound to a
//! command platform or to a responsible unit; a street desk never reads or
//! acts on another street's tickets, a unit only on its own.

use std::fmt;

use crate::{PlatformId, Ticket, TicketState, UnitCode};

/// The identity a desk token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    Platform(PlatformId),
    Unit(UnitCode),
    /// A revisit agent of the hotline (calls citizens back).
    Agent(String),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Platform(p) => write!(f, "platform {p}"),
            Caller::Unit(u) => write!(f, "unit {u}"),
            Caller::Agent(a) => write!(f, "revisit agent {a}"),
        }
    }
}

/// Everything a desk can do to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeskAction {
    Read,
    /// Dispatch or re-dispatch to a unit, or delegate down a tier.
    Dispatch,
    /// Correct the classification of a ticket waiting on the desk.
    Reclassify,
    Whistle,
    DecideExtension,
    Supervise,
    Acknowledge,
    Return,
    RequestExtension,
    Complete,
    /// A department of the platform holding the ticket takes its part.
    ReportIn,
}

impl DeskAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeskAction::Read => "read",
            DeskAction::Dispatch => "dispatch",
            DeskAction::Reclassify => "reclassify",
            DeskAction::Whistle => "whistle",
            DeskAction::DecideExtension => "decide an extension",
            DeskAction::Supervise => "supervise",
            DeskAction::Acknowledge => "acknowledge",
            DeskAction::Return => "return",
            DeskAction::RequestExtension => "request an extension",
            DeskAction::Complete => "complete",
            DeskAction::ReportIn => "report in",
        }
    }
}

/// Why a caller was refused: the rule, in words a desk operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{caller} may not {action} {target}: {rule}")]
pub struct Denied {
    pub caller: String,
    pub action: &'static str,
    /// "ticket <number>", or what else was asked for.
    pub target: String,
    pub rule: &'static str,
}

/// Whether `caller` may watch the live queue of `platform`: only that
/// platform's own desk.
pub fn authorize_watch(caller: &Caller, platform: &PlatformId) -> Result<(), Denied> {
    match caller {
        Caller::Platform(p) if p == platform => Ok(()),
        Caller::Platform(_) | Caller::Unit(_) | Caller::Agent(_) => Err(Denied {
            caller: caller.to_string(),
            action: "watch",
            target: format!("the queue of platform {platform}"),
            rule: "a platform's queue is watched by its own desk",
        }),
    }
}

const UNITS_ONLY: &str = "this is a responsible unit's action";
const DESKS_ONLY: &str = "this is a platform desk's action";
const NOT_AT_A_DESK: &str = "revisit agents work the revisit queue, not a desk";

fn is_units(action: DeskAction) -> bool {
    match action {
        DeskAction::Acknowledge | DeskAction::Return | DeskAction::RequestExtension | DeskAction::Complete | DeskAction::ReportIn => true,
        DeskAction::Read
        | DeskAction::Dispatch
        | DeskAction::Reclassify
        | DeskAction::Whistle
        | DeskAction::DecideExtension
        | DeskAction::Supervise => false,
    }
}

fn is_desks(action: DeskAction) -> bool {
    action != DeskAction::Read && !is_units(action)
}

/// Whether a caller of this kind may ever do `action`: a unit's actions are
/// units', a desk's are desks', agents act on no ticket here. Asked before a
/// ticket is looked up, so a caller of the wrong kind learns nothing of
/// which tickets exist.
pub fn authorize_kind(caller: &Caller, action: DeskAction) -> Result<(), Denied> {
    let rule = match caller {
        Caller::Platform(_) if is_units(action) => UNITS_ONLY,
        Caller::Unit(_) if is_desks(action) => DESKS_ONLY,
        Caller::Agent(_) => NOT_AT_A_DESK,
        Caller::Platform(_) | Caller::Unit(_) => return Ok(()),
    };
    Err(Denied { caller: caller.to_string(), action: action.as_str(), target: "tickets".into(), rule })
}

/// Whether `caller` may do `action` to `ticket` ([`authorize_kind`] first).
/// `unit_platform` says which platform a unit belongs to (from the city file).
pub fn authorize(
    caller: &Caller,
    action: DeskAction,
    ticket: &Ticket,
    unit_platform: impl Fn(&UnitCode) -> Option<PlatformId>,
) -> Result<(), Denied> {
    let target = || format!("ticket {}", ticket.number);
    authorize_kind(caller, action).map_err(|d| Denied { target: target(), ..d })?;
    let deny = |rule| Err(Denied { caller: caller.to_string(), action: action.as_str(), target: target(), rule });
    let holder = ticket.state.platform();
    let assignee = match &ticket.state {
        TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some(&a.unit),
        TicketState::Completed { assignment, .. } => Some(&assignment.unit),
        TicketState::Received | TicketState::Classified | TicketState::Queued { .. } | TicketState::Closed { .. } => None,
    };
    let helpers: &[UnitCode] = ticket.state.open_assignment().map_or(&[], |a| a.reported_in.as_slice());
    match caller {
        Caller::Platform(p) => match action {
            DeskAction::Read => {
                // The city command center sees everything in the city.
                if *p == PlatformId::City || ticket.platforms.contains(p) {
                    Ok(())
                } else {
                    deny("a platform reads only the tickets it has held")
                }
            }
            DeskAction::Dispatch | DeskAction::Reclassify | DeskAction::Whistle | DeskAction::DecideExtension | DeskAction::Supervise => {
                if holder == Some(p) {
                    Ok(())
                } else {
                    deny("only the platform holding the ticket acts on it")
                }
            }
            DeskAction::Acknowledge | DeskAction::Return | DeskAction::RequestExtension | DeskAction::Complete | DeskAction::ReportIn => {
                deny(UNITS_ONLY)
            }
        },
        Caller::Unit(u) => match action {
            DeskAction::Read => {
                if assignee == Some(u) || helpers.contains(u) {
                    Ok(())
                } else {
                    deny("a unit reads only the tickets assigned to it")
                }
            }
            DeskAction::Acknowledge | DeskAction::Return | DeskAction::RequestExtension | DeskAction::Complete => {
                // Whether the state allows it is the lifecycle's call.
                if assignee == Some(u) { Ok(()) } else { deny("only the unit the ticket is assigned to acts on it") }
            }
            DeskAction::ReportIn => {
                if ticket.state.open_assignment().is_some() && holder.is_some() && unit_platform(u).as_ref() == holder {
                    Ok(())
                } else {
                    deny("only a department of the platform holding the ticket reports in")
                }
            }
            DeskAction::Dispatch | DeskAction::Reclassify | DeskAction::Whistle | DeskAction::DecideExtension | DeskAction::Supervise => {
                deny(DESKS_ONLY)
            }
        },
        Caller::Agent(_) => deny(NOT_AT_A_DESK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Event, EventKind};
    use crate::{Category, Contact, Deadline, EventId, Jurisdiction, Location, Request, TicketId, TicketNumber, Urgency, WhistleLevel};
    use time::macros::datetime;

    fn ev(t: TicketId, kind: EventKind) -> Event {
        Event { id: EventId::new(), ticket_id: t, occurred_at: datetime!(2026-11-23 10:00 UTC), actor: Actor::system("t"), kind }
    }

    fn p(s: &str) -> PlatformId {
        PlatformId::parse(s).unwrap()
    }

    fn u(s: &str) -> UnitCode {
        UnitCode::parse(s).unwrap()
    }

    /// A noise ticket queued at street S1, dispatched to S1's office.
    fn ticket() -> Ticket {
        let id = TicketId::new();
        let request = Request::parse("phone", "", "噪音", Location::default(), Contact::default(), "").unwrap();
        let mut t = Ticket::open(&ev(id, EventKind::Received { number: TicketNumber::parse("20261123000001").unwrap(), request })).unwrap();
        t.apply(&ev(
            id,
            EventKind::classified_surely(
                Category::Noise,
                Urgency::Ordinary,
                WhistleLevel::Ordinary,
                Jurisdiction::default(),
                crate::Language::Zh,
            ),
        ))
        .unwrap();
        t.apply(&ev(id, EventKind::Delegated { from: PlatformId::City, to: p("street:s1"), reason: "routing".into() })).unwrap();
        let deadline = Deadline {
            due_at: datetime!(2026-11-30 10:00 UTC),
            second_due_at: datetime!(2026-12-07 10:00 UTC),
            warn_at: None,
            span: time::Duration::days(7),
            version: EventId::new(),
        };
        t.apply(&ev(id, EventKind::Dispatched { platform: p("street:s1"), unit: u("s1-office"), deadline, automatic: true })).unwrap();
        t
    }

    fn platform_of(unit: &UnitCode) -> Option<PlatformId> {
        match unit.as_str() {
            "s1-office" | "s1-community" => Some(p("street:s1")),
            "s2-office" => Some(p("street:s2")),
            "c-environment" => Some(p("county:c")),
            _ => None,
        }
    }

    #[test]
    fn every_action_by_the_wrong_street_county_or_unit_is_denied() {
        let t = ticket();
        let all = [
            DeskAction::Read,
            DeskAction::Dispatch,
            DeskAction::Reclassify,
            DeskAction::Whistle,
            DeskAction::DecideExtension,
            DeskAction::Supervise,
            DeskAction::Acknowledge,
            DeskAction::Return,
            DeskAction::RequestExtension,
            DeskAction::Complete,
            DeskAction::ReportIn,
        ];
        for wrong in [
            Caller::Platform(p("street:s2")),
            Caller::Platform(p("county:c")),
            Caller::Unit(u("s2-office")),
            Caller::Unit(u("c-environment")),
        ] {
            for a in all {
                let e = authorize(&wrong, a, &t, platform_of).unwrap_err();
                assert!(e.to_string().contains(&format!("may not {}", a.as_str())), "{e}");
            }
        }
    }

    #[test]
    fn units_do_what_units_do_and_desks_what_desks_do() {
        let t = ticket();
        let street = Caller::Platform(p("street:s1"));
        for a in [DeskAction::Acknowledge, DeskAction::Return, DeskAction::RequestExtension, DeskAction::Complete, DeskAction::ReportIn] {
            assert_eq!(authorize(&street, a, &t, platform_of).unwrap_err().rule, "this is a responsible unit's action");
        }
        let office = Caller::Unit(u("s1-office"));
        for a in [DeskAction::Dispatch, DeskAction::Reclassify, DeskAction::Whistle, DeskAction::DecideExtension, DeskAction::Supervise] {
            assert_eq!(authorize(&office, a, &t, platform_of).unwrap_err().rule, "this is a platform desk's action");
        }
        let agent = Caller::Agent("wang".into());
        assert!(authorize(&agent, DeskAction::Read, &t, platform_of).is_err());
    }

    #[test]
    fn the_wrong_kind_of_caller_is_refused_before_any_ticket_is_looked_at() {
        let street = Caller::Platform(p("street:s1"));
        let e = authorize_kind(&street, DeskAction::Complete).unwrap_err();
        assert_eq!(e.to_string(), "platform street:s1 may not complete tickets: this is a responsible unit's action");
        assert!(authorize_kind(&Caller::Unit(u("s1-office")), DeskAction::Whistle).is_err());
        assert!(authorize_kind(&Caller::Agent("li".into()), DeskAction::Read).is_err());
        authorize_kind(&street, DeskAction::Read).unwrap();
        authorize_kind(&Caller::Unit(u("s2-office")), DeskAction::Complete).unwrap();
    }

    #[test]
    fn only_a_platforms_desk_watches_its_queue() {
        authorize_watch(&Caller::Platform(p("street:s1")), &p("street:s1")).unwrap();
        for other in
            [Caller::Platform(p("street:s2")), Caller::Platform(PlatformId::City), Caller::Unit(u("s1-office")), Caller::Agent("li".into())]
        {
            let e = authorize_watch(&other, &p("street:s1")).unwrap_err();
            assert!(
                e.to_string().ends_with("may not watch the queue of platform street:s1: a platform's queue is watched by its own desk"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_holder_and_the_assignee_may_act() {
        let t = ticket();
        let street = Caller::Platform(p("street:s1"));
        for a in [DeskAction::Read, DeskAction::Dispatch, DeskAction::Whistle, DeskAction::DecideExtension, DeskAction::Supervise] {
            authorize(&street, a, &t, platform_of).unwrap();
        }
        assert!(authorize(&street, DeskAction::Complete, &t, platform_of).is_err(), "a desk does not complete for the unit");
        let office = Caller::Unit(u("s1-office"));
        for a in [DeskAction::Read, DeskAction::Acknowledge, DeskAction::Return, DeskAction::RequestExtension, DeskAction::Complete] {
            authorize(&office, a, &t, platform_of).unwrap();
        }
        authorize(&Caller::Unit(u("s1-community")), DeskAction::ReportIn, &t, platform_of).unwrap();
        assert!(authorize(&Caller::Unit(u("s1-community")), DeskAction::Complete, &t, platform_of).is_err());
    }

    #[test]
    fn after_a_whistle_the_street_still_reads_but_the_county_acts() {
        let mut t = ticket();
        t.apply(&ev(t.id, EventKind::Whistled { from: p("street:s1"), to: p("county:c"), reason: "needs the bureau".into() })).unwrap();
        let street = Caller::Platform(p("street:s1"));
        let county = Caller::Platform(p("county:c"));
        authorize(&street, DeskAction::Read, &t, platform_of).unwrap();
        assert!(authorize(&street, DeskAction::Dispatch, &t, platform_of).is_err());
        authorize(&county, DeskAction::Dispatch, &t, platform_of).unwrap();
        assert!(authorize(&Caller::Platform(p("street:s2")), DeskAction::Read, &t, platform_of).is_err());
    }
}

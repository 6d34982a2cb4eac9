//! The ticket: the record of one request, and its lifecycle as one exhaustive
//! state enum. [`Ticket::apply`] is the only way state changes, and it refuses
//! every transition the domain does not allow.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{ActorKind, Event, EventKind, ExtensionDecision, OverdueLevel, Resolution, RevisitOutcome};
use crate::{Category, Error, EventId, Jurisdiction, PlatformId, Request, Result, TicketId, TicketNumber, UnitCode, Urgency, WhistleLevel};

/// One version of a ticket's deadline and the instants of its three timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// First overdue: the reminder to the unit.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Second overdue: passed again by the same span, on the same calendar.
    #[serde(with = "time::serde::rfc3339")]
    pub second_due_at: OffsetDateTime,
    /// Desks are warned the deadline approaches.
    #[serde(with = "time::serde::rfc3339::option")]
    pub warn_at: Option<OffsetDateTime>,
    /// From assignment to due; the second overdue comes one more span later.
    pub span: time::Duration,
    /// The id of the event that set this deadline.
    pub version: EventId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub category: Category,
    pub urgency: Urgency,
    pub whistle_level: WhistleLevel,
    pub jurisdiction: Jurisdiction,
}

/// Why a ticket waits on a platform's desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueReason {
    /// The classifier was unsure: the city desk checks the classification.
    Triage,
    Delegated {
        from: PlatformId,
        reason: String,
    },
    Returned {
        unit: UnitCode,
        reason: String,
    },
    Whistled {
        from: PlatformId,
        reason: String,
    },
}

/// A ticket in a unit's hands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub platform: PlatformId,
    pub unit: UnitCode,
    #[serde(with = "time::serde::rfc3339")]
    pub assigned_at: OffsetDateTime,
    pub deadline: Deadline,
    pub overdue: Option<OverdueLevel>,
    pub warned: bool,
    pub extension_requested: bool,
    /// Departments that reported in to help.
    pub reported_in: Vec<UnitCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TicketState {
    /// Registered; the citizen has the number.
    Received,
    /// Category, urgency and jurisdiction set; waiting for routing.
    Classified,
    /// On a platform's desk, waiting for an operator or rule to dispatch it.
    Queued {
        platform: PlatformId,
        reason: QueueReason,
    },
    /// Dispatched to a unit, not yet acknowledged.
    Assigned(Assignment),
    /// The unit confirmed it has it.
    Acknowledged(Assignment),
    /// The unit reported the result; waiting for the revisit.
    Completed {
        assignment: Assignment,
        result: String,
        revisit_attempts: u32,
    },
    Closed {
        resolution: Resolution,
    },
}

impl TicketState {
    pub fn name(&self) -> &'static str {
        match self {
            TicketState::Received => "received",
            TicketState::Classified => "classified",
            TicketState::Queued { .. } => "queued",
            TicketState::Assigned(_) => "assigned",
            TicketState::Acknowledged(_) => "acknowledged",
            TicketState::Completed { .. } => "completed",
            TicketState::Closed { .. } => "closed",
        }
    }

    /// The assignment a unit is working on, if the ticket is in a unit's hands.
    pub fn open_assignment(&self) -> Option<&Assignment> {
        match self {
            TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some(a),
            TicketState::Received
            | TicketState::Classified
            | TicketState::Queued { .. }
            | TicketState::Completed { .. }
            | TicketState::Closed { .. } => None,
        }
    }

    fn open_assignment_mut(&mut self) -> Option<&mut Assignment> {
        match self {
            TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some(a),
            TicketState::Received
            | TicketState::Classified
            | TicketState::Queued { .. }
            | TicketState::Completed { .. }
            | TicketState::Closed { .. } => None,
        }
    }

    /// The platform whose desk is responsible now.
    pub fn platform(&self) -> Option<&PlatformId> {
        match self {
            TicketState::Queued { platform, .. } => Some(platform),
            TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some(&a.platform),
            TicketState::Completed { assignment, .. } => Some(&assignment.platform),
            TicketState::Received | TicketState::Classified | TicketState::Closed { .. } => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            TicketState::Closed { .. } => true,
            TicketState::Received
            | TicketState::Classified
            | TicketState::Queued { .. }
            | TicketState::Assigned(_)
            | TicketState::Acknowledged(_)
            | TicketState::Completed { .. } => false,
        }
    }
}

/// The record of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    pub number: TicketNumber,
    pub request: Request,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub classification: Option<Classification>,
    pub state: TicketState,
    pub supervised: bool,
    pub rework_count: u32,
    /// Every platform that has held the ticket; each still sees it.
    pub platforms: Vec<PlatformId>,
    /// The unit and result of the last completion, kept after closing.
    pub last_result: Option<String>,
}

impl Ticket {
    /// A ticket starts with its `received` event.
    pub fn open(event: &Event) -> Result<Self> {
        match &event.kind {
            EventKind::Received { number, request } => Ok(Ticket {
                id: event.ticket_id,
                number: number.clone(),
                request: request.clone(),
                received_at: event.occurred_at,
                updated_at: event.occurred_at,
                classification: None,
                state: TicketState::Received,
                supervised: false,
                rework_count: 0,
                platforms: Vec::new(),
                last_result: None,
            }),
            other => Err(Error::Transition {
                ticket: event.ticket_id,
                state: "unknown",
                event: other.name(),
                rule: "a ticket's first event must be received",
            }),
        }
    }

    /// Applies one event, or says which rule forbids it. On error the ticket
    /// is unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<()> {
        let mut next = self.clone();
        next.transition(event)?;
        next.updated_at = event.occurred_at;
        *self = next;
        Ok(())
    }

    fn refuse(&self, event: &EventKind, rule: &'static str) -> Error {
        Error::Transition { ticket: self.id, state: self.state.name(), event: event.name(), rule }
    }

    fn see(&mut self, platform: &PlatformId) {
        if !self.platforms.contains(platform) {
            self.platforms.push(platform.clone());
        }
    }

    /// Whether `event`'s actor may record it, whatever the state: a unit's
    /// action only from the unit the ticket is assigned to, a desk's only
    /// from the desk of the platform it concerns. The desks check the same
    /// before publishing, on a projection that may lag; this is the judge.
    /// Services acting by rule (system actors) are not restricted here.
    fn check_actor(&self, event: &Event) -> Result<()> {
        /// Who records an event of this kind.
        enum By<'a> {
            /// The unit the ticket is assigned to.
            Assignee,
            /// This unit (reporting in).
            Unit(&'a UnitCode),
            /// The desk of this platform (the one holding the ticket).
            Desk(Option<&'a PlatformId>),
            /// Anyone (revisits, answers, the services' own events).
            Anyone,
        }
        let (kind, actor) = (&event.kind, &event.actor);
        let by = match kind {
            EventKind::Acknowledged | EventKind::Returned { .. } | EventKind::ExtensionRequested { .. } | EventKind::Completed { .. } => {
                By::Assignee
            }
            EventKind::ReportedIn { unit } => By::Unit(unit),
            EventKind::Dispatched { platform, .. } => By::Desk(Some(self.state.platform().unwrap_or(platform))),
            EventKind::Delegated { from, .. } | EventKind::Whistled { from, .. } => By::Desk(Some(from)),
            EventKind::Reclassified { .. } | EventKind::ExtensionDecided(_) | EventKind::Supervised { .. } => {
                By::Desk(self.state.platform())
            }
            _ => By::Anyone,
        };
        let rule = match (actor.kind, by) {
            (ActorKind::System, _) | (_, By::Anyone) => return Ok(()),
            (ActorKind::Unit, By::Assignee) => match self.state.open_assignment() {
                Some(a) if a.unit.as_str() != actor.id => "only the unit the ticket is assigned to acts on it",
                _ => return Ok(()),
            },
            (ActorKind::Unit, By::Unit(unit)) if unit.as_str() == actor.id => return Ok(()),
            (ActorKind::Unit, By::Unit(_)) => "a unit reports in only for itself",
            (ActorKind::Operator, By::Desk(Some(p))) if actor.id == format!("desk:{p}") => return Ok(()),
            (ActorKind::Operator, By::Desk(_)) => "only the desk of the platform holding the ticket acts on it",
            (ActorKind::Unit, By::Desk(_)) => "a desk's action comes from a desk",
            (ActorKind::Operator, By::Assignee | By::Unit(_)) => "a unit's action comes from the unit",
            (ActorKind::Agent | ActorKind::Citizen, _) => "only units and desks act on a ticket in hand",
        };
        Err(self.refuse(kind, rule))
    }

    fn transition(&mut self, event: &Event) -> Result<()> {
        self.check_actor(event)?;
        let kind = &event.kind;
        match kind {
            EventKind::Received { .. } => Err(self.refuse(kind, "a ticket is received only once")),
            EventKind::Classified { category, urgency, whistle_level, jurisdiction, triage, language, .. } => match self.state {
                TicketState::Received => {
                    self.classification = Some(Classification {
                        category: *category,
                        urgency: *urgency,
                        whistle_level: *whistle_level,
                        jurisdiction: jurisdiction.clone(),
                    });
                    self.request.language = *language;
                    self.state = if *triage {
                        self.see(&PlatformId::City);
                        TicketState::Queued { platform: PlatformId::City, reason: QueueReason::Triage }
                    } else {
                        TicketState::Classified
                    };
                    Ok(())
                }
                TicketState::Classified
                | TicketState::Queued { .. }
                | TicketState::Assigned(_)
                | TicketState::Acknowledged(_)
                | TicketState::Completed { .. }
                | TicketState::Closed { .. } => Err(self.refuse(kind, "only a received ticket is classified")),
            },
            EventKind::Reclassified { category, urgency, whistle_level, jurisdiction, .. } => match &self.state {
                TicketState::Classified | TicketState::Queued { .. } => {
                    self.classification = Some(Classification {
                        category: *category,
                        urgency: *urgency,
                        whistle_level: *whistle_level,
                        jurisdiction: jurisdiction.clone(),
                    });
                    self.state = TicketState::Classified;
                    Ok(())
                }
                TicketState::Received
                | TicketState::Assigned(_)
                | TicketState::Acknowledged(_)
                | TicketState::Completed { .. }
                | TicketState::Closed { .. } => {
                    Err(self.refuse(kind, "only a ticket waiting on a desk (triage, delegated, whistled, returned) is reclassified"))
                }
            },
            EventKind::Answered { .. } => match self.state {
                TicketState::Classified => {
                    self.state = TicketState::Closed { resolution: Resolution::Answered };
                    Ok(())
                }
                TicketState::Received
                | TicketState::Queued { .. }
                | TicketState::Assigned(_)
                | TicketState::Acknowledged(_)
                | TicketState::Completed { .. }
                | TicketState::Closed { .. } => Err(self.refuse(kind, "only a classified ticket is answered directly")),
            },
            EventKind::Dispatched { platform, unit, deadline, .. } => {
                let allowed = match &self.state {
                    TicketState::Classified => true,
                    TicketState::Queued { platform: p, .. } => p == platform,
                    TicketState::Assigned(a) | TicketState::Acknowledged(a) => &a.platform == platform,
                    TicketState::Received | TicketState::Completed { .. } | TicketState::Closed { .. } => false,
                };
                if !allowed {
                    return Err(self.refuse(kind, "a ticket is dispatched when classified, or by the platform holding it"));
                }
                self.see(platform);
                self.state = TicketState::Assigned(Assignment {
                    platform: platform.clone(),
                    unit: unit.clone(),
                    assigned_at: event.occurred_at,
                    deadline: *deadline,
                    overdue: None,
                    warned: false,
                    extension_requested: false,
                    reported_in: Vec::new(),
                });
                Ok(())
            }
            EventKind::Delegated { from, to, reason } => {
                let allowed = match &self.state {
                    TicketState::Classified => true,
                    TicketState::Queued { platform, .. } => platform == from,
                    TicketState::Received
                    | TicketState::Assigned(_)
                    | TicketState::Acknowledged(_)
                    | TicketState::Completed { .. }
                    | TicketState::Closed { .. } => false,
                };
                if !allowed {
                    return Err(self.refuse(kind, "only a classified ticket or one queued at the delegating platform is delegated"));
                }
                self.see(to);
                self.state = TicketState::Queued {
                    platform: to.clone(),
                    reason: QueueReason::Delegated { from: from.clone(), reason: reason.clone() },
                };
                Ok(())
            }
            EventKind::Acknowledged => match &self.state {
                TicketState::Assigned(a) => {
                    self.state = TicketState::Acknowledged(a.clone());
                    Ok(())
                }
                TicketState::Received
                | TicketState::Classified
                | TicketState::Queued { .. }
                | TicketState::Acknowledged(_)
                | TicketState::Completed { .. }
                | TicketState::Closed { .. } => Err(self.refuse(kind, "only an assigned, unacknowledged ticket is acknowledged")),
            },
            EventKind::Returned { reason } => match self.state.open_assignment() {
                Some(a) => {
                    let (platform, unit) = (a.platform.clone(), a.unit.clone());
                    self.state = TicketState::Queued { platform, reason: QueueReason::Returned { unit, reason: reason.clone() } };
                    Ok(())
                }
                None => Err(self.refuse(kind, "only a ticket in a unit's hands is returned")),
            },
            EventKind::Whistled { from, to, reason } => {
                if from.tier() <= to.tier() {
                    return Err(self.refuse(kind, "a whistle goes to a higher tier"));
                }
                if self.state.platform() != Some(from) || matches!(self.state, TicketState::Completed { .. }) {
                    return Err(self.refuse(kind, "only the platform holding an open ticket whistles"));
                }
                self.see(to);
                self.state = TicketState::Queued {
                    platform: to.clone(),
                    reason: QueueReason::Whistled { from: from.clone(), reason: reason.clone() },
                };
                Ok(())
            }
            EventKind::ReportedIn { unit } => match self.state.open_assignment_mut() {
                Some(a) => {
                    if !a.reported_in.contains(unit) {
                        a.reported_in.push(unit.clone());
                    }
                    Ok(())
                }
                None => Err(self.refuse(kind, "departments report in to a ticket in hand")),
            },
            EventKind::ExtensionRequested { .. } => match self.state.open_assignment_mut() {
                Some(a) if !a.extension_requested => {
                    a.extension_requested = true;
                    Ok(())
                }
                Some(_) => Err(self.refuse(kind, "an extension request is already pending")),
                None => Err(self.refuse(kind, "only a ticket in a unit's hands can be extended")),
            },
            EventKind::ExtensionDecided(decision) => match self.state.open_assignment_mut() {
                Some(a) if a.extension_requested => {
                    a.extension_requested = false;
                    match decision {
                        ExtensionDecision::Granted { deadline, .. } => {
                            a.deadline = *deadline;
                            a.overdue = None;
                            a.warned = false;
                        }
                        ExtensionDecision::Refused { .. } => {}
                    }
                    Ok(())
                }
                Some(_) => Err(self.refuse(kind, "no extension request is pending")),
                None => Err(self.refuse(kind, "only a ticket in a unit's hands can be extended")),
            },
            EventKind::DeadlineWarning { deadline_version } => match self.state.open_assignment_mut() {
                Some(a) if a.deadline.version == *deadline_version => {
                    a.warned = true;
                    Ok(())
                }
                Some(_) => Err(self.refuse(kind, "the warning belongs to a superseded deadline")),
                None => Err(self.refuse(kind, "only a ticket in a unit's hands has a deadline")),
            },
            EventKind::Overdue { level, deadline_version, .. } => {
                let Some(a) = self.state.open_assignment_mut() else {
                    return Err(self.refuse(kind, "only a ticket in a unit's hands can be overdue"));
                };
                if a.deadline.version != *deadline_version {
                    return Err(self.refuse(kind, "the overdue belongs to a superseded deadline"));
                }
                a.overdue = a.overdue.max(Some(*level));
                match level {
                    OverdueLevel::First => {}
                    OverdueLevel::Second => self.supervised = true,
                }
                Ok(())
            }
            EventKind::Supervised { .. } => {
                if self.state.is_closed() {
                    return Err(self.refuse(kind, "a closed ticket is not supervised"));
                }
                self.supervised = true;
                Ok(())
            }
            EventKind::Completed { result } => match self.state.open_assignment() {
                Some(a) => {
                    self.last_result = Some(result.clone());
                    self.state = TicketState::Completed { assignment: a.clone(), result: result.clone(), revisit_attempts: 0 };
                    Ok(())
                }
                None => Err(self.refuse(kind, "only a ticket in a unit's hands is completed")),
            },
            EventKind::RevisitRecorded { outcome, .. } => match &mut self.state {
                TicketState::Completed { revisit_attempts, .. } => {
                    match outcome {
                        RevisitOutcome::Satisfied | RevisitOutcome::Unsatisfied | RevisitOutcome::Unreachable => *revisit_attempts += 1,
                    }
                    Ok(())
                }
                TicketState::Received
                | TicketState::Classified
                | TicketState::Queued { .. }
                | TicketState::Assigned(_)
                | TicketState::Acknowledged(_)
                | TicketState::Closed { .. } => Err(self.refuse(kind, "only a completed ticket is revisited")),
            },
            EventKind::Reopened { deadline, .. } => match &self.state {
                TicketState::Completed { assignment, .. } => {
                    self.rework_count += 1;
                    self.state = TicketState::Assigned(Assignment {
                        assigned_at: event.occurred_at,
                        deadline: *deadline,
                        overdue: None,
                        warned: false,
                        extension_requested: false,
                        ..assignment.clone()
                    });
                    Ok(())
                }
                TicketState::Received
                | TicketState::Classified
                | TicketState::Queued { .. }
                | TicketState::Assigned(_)
                | TicketState::Acknowledged(_)
                | TicketState::Closed { .. } => Err(self.refuse(kind, "only a completed ticket is reopened for rework")),
            },
            EventKind::Closed { resolution } => match (&self.state, resolution) {
                (TicketState::Completed { .. }, Resolution::Satisfied | Resolution::Unreachable) => {
                    self.state = TicketState::Closed { resolution: *resolution };
                    Ok(())
                }
                (TicketState::Classified, Resolution::Answered) => {
                    self.state = TicketState::Closed { resolution: *resolution };
                    Ok(())
                }
                (TicketState::Completed { .. }, Resolution::Answered)
                | (TicketState::Classified, Resolution::Satisfied | Resolution::Unreachable)
                | (
                    TicketState::Received
                    | TicketState::Queued { .. }
                    | TicketState::Assigned(_)
                    | TicketState::Acknowledged(_)
                    | TicketState::Closed { .. },
                    _,
                ) => Err(self.refuse(kind, "a ticket closes after completion (satisfied, unreachable) or when answered")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Actor;
    use crate::{Contact, Location};
    use time::macros::datetime;

    fn ev(ticket: TicketId, kind: EventKind) -> Event {
        Event { id: EventId::new(), ticket_id: ticket, occurred_at: datetime!(2026-11-23 10:00 UTC), actor: Actor::system("test"), kind }
    }

    fn received() -> (Ticket, TicketId) {
        let id = TicketId::new();
        let request = Request::parse("phone", "", "楼上漏水", Location::default(), Contact::default(), "").unwrap();
        let t = Ticket::open(&ev(id, EventKind::Received { number: TicketNumber::parse("20261123000001").unwrap(), request })).unwrap();
        (t, id)
    }

    fn classified() -> EventKind {
        EventKind::classified_surely(
            Category::Water,
            Urgency::Ordinary,
            WhistleLevel::Ordinary,
            Jurisdiction::default(),
            crate::Language::Zh,
        )
    }

    #[test]
    fn an_unsure_classification_waits_on_the_city_triage_queue_until_reclassified() {
        let (mut t, id) = received();
        let unsure = EventKind::Classified {
            category: Category::Other,
            urgency: Urgency::Ordinary,
            whistle_level: WhistleLevel::Ordinary,
            jurisdiction: Jurisdiction::default(),
            matched_rules: vec![],
            language: crate::Language::En,
            confidence: 0.31,
            runners_up: vec![crate::Alternative { category: Category::Water, probability: 0.29 }],
            triage: true,
            answers: Vec::new(),
            answered: false,
        };
        t.apply(&ev(id, unsure)).unwrap();
        assert_eq!(t.state, TicketState::Queued { platform: PlatformId::City, reason: QueueReason::Triage });
        assert_eq!(t.request.language, crate::Language::En, "the classifier's language is the ticket's");
        let fix = EventKind::Reclassified {
            category: Category::Water,
            urgency: Urgency::Urgent,
            whistle_level: WhistleLevel::Ordinary,
            jurisdiction: Jurisdiction::street("dongcheng", "dc-jingshan"),
            reason: "a burst pipe".into(),
        };
        t.apply(&ev(id, fix.clone())).unwrap();
        assert_eq!(t.state, TicketState::Classified);
        let c = t.classification.clone().unwrap();
        assert_eq!((c.category, c.urgency, c.jurisdiction.street.as_deref()), (Category::Water, Urgency::Urgent, Some("dc-jingshan")));
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        let err = t.apply(&ev(id, fix)).unwrap_err();
        assert!(err.to_string().contains("only a ticket waiting on a desk"), "{err}");
    }

    fn deadline() -> Deadline {
        Deadline {
            due_at: datetime!(2026-11-30 10:00 UTC),
            second_due_at: datetime!(2026-12-07 10:00 UTC),
            warn_at: None,
            span: time::Duration::days(7),
            version: EventId::new(),
        }
    }

    fn dispatched(d: Deadline) -> EventKind {
        EventKind::Dispatched { platform: PlatformId::City, unit: UnitCode::parse("water-group").unwrap(), deadline: d, automatic: true }
    }

    #[test]
    fn the_lifecycle_checks_who_acts() {
        let (mut t, id) = received();
        t.apply(&ev(id, classified())).unwrap();
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        let by = |actor: Actor, kind: EventKind| Event { actor, ..ev(id, kind) };
        let other = UnitCode::parse("ecology-group").unwrap();
        let mine = UnitCode::parse("water-group").unwrap();
        let refused = |t: &mut Ticket, e: Event| t.apply(&e).unwrap_err().to_string();
        let e = refused(&mut t, by(Actor::unit(&other), EventKind::Completed { result: "x".into() }));
        assert!(e.contains("only the unit the ticket is assigned to"), "{e}");
        let e = refused(&mut t, by(Actor::operator("desk:city"), EventKind::Completed { result: "x".into() }));
        assert!(e.contains("a unit's action comes from the unit"), "{e}");
        let e = refused(&mut t, by(Actor::unit(&mine), EventKind::Supervised { reason: "x".into() }));
        assert!(e.contains("a desk's action comes from a desk"), "{e}");
        let e = refused(&mut t, by(Actor::operator("desk:county:xicheng"), EventKind::Supervised { reason: "x".into() }));
        assert!(e.contains("only the desk of the platform holding the ticket"), "{e}");
        let e = refused(&mut t, by(Actor::unit(&other), EventKind::ReportedIn { unit: mine.clone() }));
        assert!(e.contains("reports in only for itself"), "{e}");
        assert_eq!(t.state.open_assignment().map(|a| &a.unit), Some(&mine), "nothing refused changed the ticket");
        t.apply(&by(Actor::operator("desk:city"), EventKind::Supervised { reason: "x".into() })).unwrap();
        t.apply(&by(Actor::unit(&mine), EventKind::Completed { result: "fixed".into() })).unwrap();
        assert!(matches!(t.state, TicketState::Completed { .. }));
    }

    #[test]
    fn happy_path_to_closed() {
        let (mut t, id) = received();
        t.apply(&ev(id, classified())).unwrap();
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        t.apply(&ev(id, EventKind::Acknowledged)).unwrap();
        t.apply(&ev(id, EventKind::Completed { result: "fixed".into() })).unwrap();
        t.apply(&ev(id, EventKind::RevisitRecorded { outcome: RevisitOutcome::Satisfied, reason: String::new() })).unwrap();
        t.apply(&ev(id, EventKind::Closed { resolution: Resolution::Satisfied })).unwrap();
        assert_eq!(t.state, TicketState::Closed { resolution: Resolution::Satisfied });
        assert_eq!(t.last_result.as_deref(), Some("fixed"));
        assert_eq!(t.platforms, vec![PlatformId::City]);
    }

    #[test]
    fn invalid_transitions_are_refused_and_leave_the_ticket_unchanged() {
        let (mut t, id) = received();
        let before = t.clone();
        let err = t.apply(&ev(id, EventKind::Completed { result: "x".into() })).unwrap_err();
        assert!(matches!(err, Error::Transition { state: "received", event: "completed", .. }), "{err}");
        assert_eq!(t, before);
        assert!(t.apply(&ev(id, dispatched(deadline()))).is_err(), "dispatch before classification");
        t.apply(&ev(id, classified())).unwrap();
        assert!(t.apply(&ev(id, classified())).is_err(), "classified twice");
        assert!(t.apply(&ev(id, EventKind::Acknowledged)).is_err(), "acknowledge before dispatch");
        assert!(t.apply(&ev(id, EventKind::Closed { resolution: Resolution::Satisfied })).is_err());
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        t.apply(&ev(id, EventKind::Completed { result: "x".into() })).unwrap();
        assert!(t.apply(&ev(id, EventKind::Completed { result: "again".into() })).is_err(), "completed twice");
        t.apply(&ev(id, EventKind::Closed { resolution: Resolution::Unreachable })).unwrap();
        assert!(t.apply(&ev(id, EventKind::Supervised { reason: "late".into() })).is_err());
    }

    #[test]
    fn overdue_of_a_superseded_deadline_is_refused() {
        let (mut t, id) = received();
        t.apply(&ev(id, classified())).unwrap();
        let old = deadline();
        t.apply(&ev(id, dispatched(old))).unwrap();
        t.apply(&ev(id, EventKind::ExtensionRequested { reason: "parts".into(), requested_due: datetime!(2026-12-05 10:00 UTC) })).unwrap();
        let new = deadline();
        t.apply(&ev(id, EventKind::ExtensionDecided(ExtensionDecision::Granted { deadline: new, note: String::new() }))).unwrap();
        let overdue = |v| EventKind::Overdue {
            level: OverdueLevel::First,
            deadline_version: v,
            due_at: old.due_at,
            unit: UnitCode::parse("water-group").unwrap(),
        };
        assert!(t.apply(&ev(id, overdue(old.version))).is_err());
        t.apply(&ev(id, overdue(new.version))).unwrap();
        assert_eq!(t.state.open_assignment().unwrap().overdue, Some(OverdueLevel::First));
        assert!(!t.supervised);
        t.apply(&ev(
            id,
            EventKind::Overdue {
                level: OverdueLevel::Second,
                deadline_version: new.version,
                due_at: new.due_at,
                unit: UnitCode::parse("water-group").unwrap(),
            },
        ))
        .unwrap();
        assert!(t.supervised, "second overdue makes it supervised");
    }

    #[test]
    fn whistle_goes_up_and_lower_platform_keeps_seeing_it() {
        let (mut t, id) = received();
        t.apply(&ev(id, classified())).unwrap();
        let street = PlatformId::parse("street:east-1").unwrap();
        let county = PlatformId::parse("county:east").unwrap();
        t.apply(&ev(id, EventKind::Delegated { from: PlatformId::City, to: street.clone(), reason: "routing".into() })).unwrap();
        let down = EventKind::Whistled { from: street.clone(), to: street.clone(), reason: "x".into() };
        assert!(t.apply(&ev(id, down)).is_err(), "whistle must go up");
        t.apply(&ev(id, EventKind::Whistled { from: street.clone(), to: county.clone(), reason: "needs the bureau".into() })).unwrap();
        assert_eq!(t.state.platform(), Some(&county));
        assert_eq!(t.platforms, vec![street, county]);
    }

    #[test]
    fn return_puts_it_back_on_the_platform_queue_and_rework_counts() {
        let (mut t, id) = received();
        t.apply(&ev(id, classified())).unwrap();
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        t.apply(&ev(id, EventKind::Returned { reason: "not ours".into() })).unwrap();
        assert!(
            matches!(&t.state, TicketState::Queued { platform: PlatformId::City, reason: QueueReason::Returned { reason, .. } } if reason == "not ours")
        );
        t.apply(&ev(id, dispatched(deadline()))).unwrap();
        t.apply(&ev(id, EventKind::Completed { result: "done".into() })).unwrap();
        t.apply(&ev(id, EventKind::Reopened { reason: "still leaking".into(), deadline: deadline() })).unwrap();
        assert_eq!(t.rework_count, 1);
        assert_eq!(t.state.name(), "assigned");
    }
}

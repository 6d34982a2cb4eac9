//! Assessment figures, folded from the events: per unit, per platform and
//! city-wide, for any period `[from, to)`. Every count is taken at the time of
//! its own event (a ticket received in October and completed in November
//! counts as received in October and completed in November), attributed to
//! the unit and platform the ticket was with at that moment.
//!
//! | figure | counted on | unit / platform |
//! |---|---|---|
//! | received | `received` (city-wide and the city platform, where every request comes in); a ticket's first arrival on another platform (delegated or whistled to it, or dispatched by it); a ticket's first dispatch to a unit | as said |
//! | dispatched | `dispatched` | the unit it went to / the platform that sent it |
//! | completed | `completed` | the assignment's unit and platform |
//! | on time | `completed` at or before the deadline then in force | same |
//! | returned | `returned` (a unit sends back a misrouted ticket) | same |
//! | revisited | the first revisit attempt after a completion | the completed assignment |
//! | satisfied / unsatisfied | `revisit_recorded` with that outcome | same |
//! | unreachable | `closed` as unreachable (every try failed) | same |
//! | reworked | `reopened` | same |
//!
//! Rates: on-time = on time / completed; feedback = completed / (dispatched +
//! reworked), the share of what units were given that they reported back on;
//! revisit coverage = revisited / completed; satisfaction = satisfied /
//! (satisfied + unsatisfied), the unreachable counted apart; rework =
//! reworked / completed; return = returned / dispatched. A rate with nothing
//! to divide by is `None` (shown as "-").

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::OffsetDateTime;

use crate::event::{Event, EventKind, Resolution, RevisitOutcome};
use crate::{PlatformId, TicketId, UnitCode};

/// The counts of one scope over one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub received: u64,
    pub dispatched: u64,
    pub completed: u64,
    pub on_time: u64,
    pub returned: u64,
    pub revisited: u64,
    pub satisfied: u64,
    pub unsatisfied: u64,
    pub unreachable: u64,
    pub reworked: u64,
}

fn rate(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Counts {
    pub fn on_time_rate(&self) -> Option<f64> {
        rate(self.on_time, self.completed)
    }
    pub fn feedback_rate(&self) -> Option<f64> {
        rate(self.completed, self.dispatched + self.reworked)
    }
    pub fn revisit_coverage(&self) -> Option<f64> {
        rate(self.revisited, self.completed)
    }
    pub fn satisfaction_rate(&self) -> Option<f64> {
        rate(self.satisfied, self.satisfied + self.unsatisfied)
    }
    pub fn rework_rate(&self) -> Option<f64> {
        rate(self.reworked, self.completed)
    }
    pub fn return_rate(&self) -> Option<f64> {
        rate(self.returned, self.dispatched)
    }
}

/// A rate as people read it: `97.5%`, or `-` when there is nothing to divide by.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// One of the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    Received,
    Dispatched,
    Completed,
    OnTime,
    Returned,
    Revisited,
    Satisfied,
    Unsatisfied,
    Unreachable,
    Reworked,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::Received,
        Counter::Dispatched,
        Counter::Completed,
        Counter::OnTime,
        Counter::Returned,
        Counter::Revisited,
        Counter::Satisfied,
        Counter::Unsatisfied,
        Counter::Unreachable,
        Counter::Reworked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Received => "received",
            Counter::Dispatched => "dispatched",
            Counter::Completed => "completed",
            Counter::OnTime => "on_time",
            Counter::Returned => "returned",
            Counter::Revisited => "revisited",
            Counter::Satisfied => "satisfied",
            Counter::Unsatisfied => "unsatisfied",
            Counter::Unreachable => "unreachable",
            Counter::Reworked => "reworked",
        }
    }

    pub fn parse(s: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl Counts {
    /// Adds `n` to one count.
    pub fn add(&mut self, counter: Counter, n: u64) {
        let field = match counter {
            Counter::Received => &mut self.received,
            Counter::Dispatched => &mut self.dispatched,
            Counter::Completed => &mut self.completed,
            Counter::OnTime => &mut self.on_time,
            Counter::Returned => &mut self.returned,
            Counter::Revisited => &mut self.revisited,
            Counter::Satisfied => &mut self.satisfied,
            Counter::Unsatisfied => &mut self.unsatisfied,
            Counter::Unreachable => &mut self.unreachable,
            Counter::Reworked => &mut self.reworked,
        };
        *field += n;
    }
}

/// Where a count goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "scope", content = "code", rename_all = "snake_case")]
pub enum Scope {
    City,
    Platform(PlatformId),
    Unit(UnitCode),
}

impl Scope {
    /// `city`, `platform` or `unit`, and the code (empty for the city).
    pub fn parts(&self) -> (&'static str, String) {
        match self {
            Scope::City => ("city", String::new()),
            Scope::Platform(p) => ("platform", p.to_string()),
            Scope::Unit(u) => ("unit", u.to_string()),
        }
    }

    pub fn from_parts(kind: &str, code: &str) -> Option<Scope> {
        match kind {
            "city" => Some(Scope::City),
            "platform" => PlatformId::parse(code).ok().map(Scope::Platform),
            "unit" => UnitCode::parse(code).ok().map(Scope::Unit),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::City => f.write_str("city-wide"),
            Scope::Platform(p) => write!(f, "platform {p}"),
            Scope::Unit(u) => write!(f, "unit {u}"),
        }
    }
}

/// One count to add to one scope.
pub type Increment = (Scope, Counter);

/// Counts one thing city-wide, on the platform and on the unit.
fn with(add: &mut Vec<Increment>, platform: &PlatformId, unit: &UnitCode, f: Counter) {
    add.push((Scope::City, f));
    add.push((Scope::Platform(platform.clone()), f));
    add.push((Scope::Unit(unit.clone()), f));
}

/// What the fold remembers of one ticket (from all of its events, also the
/// ones before the period).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Platform, unit and due instant of the assignment in force.
    assignment: Option<(PlatformId, UnitCode, OffsetDateTime)>,
    /// The assignment last completed, while waiting for its first revisit.
    awaiting_revisit: Option<(PlatformId, UnitCode)>,
    /// The completed assignment the revisits are about.
    revisited: Option<(PlatformId, UnitCode)>,
    platforms: BTreeSet<PlatformId>,
    units: BTreeSet<UnitCode>,
    /// The ticket's latest event ids: a copy of one (published again by a
    /// redelivered batch, a timer fired twice) counts nothing.
    #[serde(default, skip_serializing_if = "std::collections::VecDeque::is_empty")]
    seen: std::collections::VecDeque<crate::EventId>,
}

/// How many of a ticket's latest event ids a track remembers: copies come
/// close behind the original.
const SEEN: usize = 64;

/// The figures of a period: feed it every event in topic order
/// ([`Figures::apply`]), then read [`Figures::get`] or [`Figures::rows`].
#[derive(Debug)]
pub struct Figures {
    from: OffsetDateTime,
    to: OffsetDateTime,
    counts: BTreeMap<Scope, Counts>,
    tickets: HashMap<TicketId, Track>,
}

impl Figures {
    pub fn new(from: OffsetDateTime, to: OffsetDateTime) -> Self {
        Figures { from, to, counts: BTreeMap::new(), tickets: HashMap::new() }
    }

    pub fn period(&self) -> (OffsetDateTime, OffsetDateTime) {
        (self.from, self.to)
    }

    /// The counts of a scope (zero when nothing happened there).
    pub fn get(&self, scope: &Scope) -> Counts {
        self.counts.get(scope).copied().unwrap_or_default()
    }

    /// Every scope with something counted, city first, then platforms, then units.
    pub fn rows(&self) -> impl Iterator<Item = (&Scope, &Counts)> {
        self.counts.iter()
    }

    /// Folds one event in. Events outside the period still update what is
    /// known about their ticket; only events inside it are counted.
    pub fn apply(&mut self, e: &Event) {
        let inside = e.occurred_at >= self.from && e.occurred_at < self.to;
        let add = step(self.tickets.entry(e.ticket_id).or_default(), e);
        if inside {
            for (scope, counter) in add {
                self.counts.entry(scope).or_default().add(counter, 1);
            }
        }
    }

    /// Figures of a period from counts added up elsewhere (daily tallies).
    pub fn from_counts(from: OffsetDateTime, to: OffsetDateTime, counts: BTreeMap<Scope, Counts>) -> Self {
        Figures { from, to, counts, tickets: HashMap::new() }
    }
}

/// What one event adds, to which scopes, given what is known of its ticket
/// (which it updates). [`Figures::apply`] and the revisit service's daily
/// tallies both count through this.
pub fn step(track: &mut Track, e: &Event) -> Vec<Increment> {
    if track.seen.contains(&e.id) {
        return Vec::new();
    }
    if track.seen.len() == SEEN {
        track.seen.pop_front();
    }
    track.seen.push_back(e.id);
    let mut add: Vec<Increment> = Vec::new();
    match &e.kind {
        EventKind::Received { .. } => {
            // Every request comes in through the city's hotline platform.
            add.push((Scope::City, Counter::Received));
            if track.platforms.insert(PlatformId::City) {
                add.push((Scope::Platform(PlatformId::City), Counter::Received));
            }
        }
        EventKind::Delegated { to, .. } | EventKind::Whistled { to, .. } => {
            if track.platforms.insert(to.clone()) {
                add.push((Scope::Platform(to.clone()), Counter::Received));
            }
        }
        EventKind::Dispatched { platform, unit, deadline, .. } => {
            if track.platforms.insert(platform.clone()) {
                add.push((Scope::Platform(platform.clone()), Counter::Received));
            }
            if track.units.insert(unit.clone()) {
                add.push((Scope::Unit(unit.clone()), Counter::Received));
            }
            with(&mut add, platform, unit, Counter::Dispatched);
            track.assignment = Some((platform.clone(), unit.clone(), deadline.due_at));
        }
        EventKind::ExtensionDecided(crate::ExtensionDecision::Granted { deadline, .. }) => {
            if let Some(a) = &mut track.assignment {
                a.2 = deadline.due_at;
            }
        }
        EventKind::Returned { .. } => {
            if let Some((platform, unit, _)) = track.assignment.take() {
                with(&mut add, &platform, &unit, Counter::Returned);
            }
        }
        EventKind::Completed { .. } => {
            if let Some((platform, unit, due_at)) = track.assignment.take() {
                with(&mut add, &platform, &unit, Counter::Completed);
                if e.occurred_at <= due_at {
                    with(&mut add, &platform, &unit, Counter::OnTime);
                }
                track.awaiting_revisit = Some((platform.clone(), unit.clone()));
                track.revisited = Some((platform, unit));
            }
        }
        EventKind::RevisitRecorded { outcome, .. } => {
            if let Some((platform, unit)) = track.awaiting_revisit.take() {
                with(&mut add, &platform, &unit, Counter::Revisited);
            }
            if let Some((platform, unit)) = track.revisited.clone() {
                match outcome {
                    RevisitOutcome::Satisfied => with(&mut add, &platform, &unit, Counter::Satisfied),
                    RevisitOutcome::Unsatisfied => with(&mut add, &platform, &unit, Counter::Unsatisfied),
                    RevisitOutcome::Unreachable => {}
                }
            }
        }
        EventKind::Reopened { deadline, .. } => {
            if let Some((platform, unit)) = track.revisited.take() {
                with(&mut add, &platform, &unit, Counter::Reworked);
                track.assignment = Some((platform, unit, deadline.due_at));
            }
            track.awaiting_revisit = None;
        }
        EventKind::Closed { resolution } => {
            if let (Resolution::Unreachable, Some((platform, unit))) = (resolution, &track.revisited) {
                let (platform, unit) = (platform.clone(), unit.clone());
                with(&mut add, &platform, &unit, Counter::Unreachable);
            }
            track.awaiting_revisit = None;
            track.revisited = None;
        }
        EventKind::Classified { .. }
        | EventKind::Reclassified { .. }
        | EventKind::Answered { .. }
        | EventKind::Acknowledged
        | EventKind::ReportedIn { .. }
        | EventKind::ExtensionRequested { .. }
        | EventKind::ExtensionDecided(crate::ExtensionDecision::Refused { .. })
        | EventKind::DeadlineWarning { .. }
        | EventKind::Overdue { .. }
        | EventKind::Supervised { .. } => {}
    }
    add
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Deadline, EventId};
    use time::macros::datetime;

    fn ev(ticket: TicketId, at: OffsetDateTime, kind: EventKind) -> Event {
        Event { id: EventId::new(), ticket_id: ticket, occurred_at: at, actor: Actor::system("t"), kind }
    }

    fn dispatched(platform: &str, unit: &str, due: OffsetDateTime) -> EventKind {
        EventKind::Dispatched {
            platform: PlatformId::parse(platform).unwrap(),
            unit: UnitCode::parse(unit).unwrap(),
            deadline: Deadline { due_at: due, second_due_at: due, warn_at: None, span: time::Duration::hours(1), version: EventId::new() },
            automatic: true,
        }
    }

    #[test]
    fn a_copy_of_an_event_counts_nothing() {
        let t = crate::TicketId::new();
        let request = crate::Request::parse("phone", "", "漏水", crate::Location::default(), crate::Contact::default(), "zh").unwrap();
        let e = Event {
            id: crate::EventId::new(),
            ticket_id: t,
            occurred_at: time::macros::datetime!(2026-11-10 10:00 +08:00),
            actor: crate::Actor::system("t"),
            kind: EventKind::Received { number: crate::TicketNumber::parse("20261110000001").unwrap(), request },
        };
        let mut track = Track::default();
        assert!(!step(&mut track, &e).is_empty());
        assert!(step(&mut track, &e).is_empty(), "the same event again");
        let json = serde_json::to_string(&track).unwrap();
        let back: Track = serde_json::from_str(&json).unwrap();
        assert!(step(&mut back.clone(), &e).is_empty(), "remembered across the stored form: {json}");
        let before = json.replace(r#","seen":"#, r#","unused":"#);
        let old: Track = serde_json::from_str(&before).unwrap();
        assert!(old.seen.is_empty(), "a track stored before this change still reads: {before}");
    }

    #[test]
    fn counts_land_in_the_period_of_their_event_and_on_the_unit_in_charge() {
        let (from, to) = (datetime!(2026-11-01 00:00 +08:00), datetime!(2026-12-01 00:00 +08:00));
        let mut f = Figures::new(from, to);
        let t = TicketId::new();
        // Dispatched in October, completed late in November, unsatisfied, reworked, completed on time.
        f.apply(&ev(t, datetime!(2026-10-30 10:00 +08:00), dispatched("city", "water", datetime!(2026-11-02 10:00 +08:00))));
        f.apply(&ev(t, datetime!(2026-11-03 10:00 +08:00), EventKind::Completed { result: "x".into() }));
        f.apply(&ev(
            t,
            datetime!(2026-11-04 10:00 +08:00),
            EventKind::RevisitRecorded { outcome: RevisitOutcome::Unsatisfied, reason: "no".into() },
        ));
        let deadline = Deadline {
            due_at: datetime!(2026-11-09 10:00 +08:00),
            second_due_at: datetime!(2026-11-12 10:00 +08:00),
            warn_at: None,
            span: time::Duration::days(3),
            version: EventId::new(),
        };
        f.apply(&ev(t, datetime!(2026-11-04 10:00 +08:00), EventKind::Reopened { reason: "no".into(), deadline }));
        f.apply(&ev(t, datetime!(2026-11-05 10:00 +08:00), EventKind::Completed { result: "y".into() }));
        f.apply(&ev(
            t,
            datetime!(2026-11-06 10:00 +08:00),
            EventKind::RevisitRecorded { outcome: RevisitOutcome::Satisfied, reason: String::new() },
        ));
        let water = f.get(&Scope::Unit(UnitCode::parse("water").unwrap()));
        assert_eq!(
            water,
            Counts { completed: 2, on_time: 1, revisited: 2, satisfied: 1, unsatisfied: 1, reworked: 1, ..Counts::default() },
            "the October dispatch is not counted in November"
        );
        assert_eq!(water.satisfaction_rate(), Some(0.5));
        assert_eq!(water.rework_rate(), Some(0.5));
        assert_eq!(water.feedback_rate(), Some(2.0), "nothing was dispatched in November, one rework was given");
        assert_eq!(f.get(&Scope::City), water);
        assert_eq!(water.return_rate(), None);
    }
}

//! Revisits ("really done, really closed"): every completed ticket is
//! revisited; the citizen is satisfied (closed), unsatisfied (reopened for
//! rework at the same unit) or unreachable, which is tried again on another
//! day and, after the last try, closes the ticket as unreachable.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::calendar::{Span, WorkCalendar};
use crate::event::{EventKind, Resolution, RevisitOutcome};
use crate::{Error, Result};

/// The revisit rules of a city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RevisitPolicy {
    /// A revisit is due within this span of the completion.
    pub due_within: Span,
    /// Tries before a citizen counts as unreachable.
    pub max_attempts: u32,
    /// Spacing of retries after an unreachable try (a different day).
    pub retry_after: Span,
}

impl Default for RevisitPolicy {
    fn default() -> Self {
        RevisitPolicy { due_within: Span::WorkingDays(1), max_attempts: 3, retry_after: Span::WorkingDays(1) }
    }
}

/// One ticket's revisit, as revisit agents see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RevisitTask {
    /// Waiting for an agent (or the citizen's SMS/link answer).
    Due {
        #[serde(with = "time::serde::rfc3339")]
        due_at: OffsetDateTime,
        attempts: u32,
    },
    /// Done: the event that ends it.
    Finished { outcome: RevisitOutcome },
}

impl RevisitTask {
    /// A revisit for a ticket completed at `completed_at`.
    pub fn new(completed_at: OffsetDateTime, policy: &RevisitPolicy, calendar: &WorkCalendar) -> Self {
        RevisitTask::Due { due_at: calendar.add(completed_at, policy.due_within), attempts: 0 }
    }

    /// Records one attempt's outcome at `at`; returns the lifecycle event the
    /// ticket gets (closed, reopened, or none while retries remain).
    pub fn record(
        &mut self,
        outcome: RevisitOutcome,
        at: OffsetDateTime,
        policy: &RevisitPolicy,
        calendar: &WorkCalendar,
    ) -> Result<Option<EventKind>> {
        let RevisitTask::Due { attempts, .. } = *self else {
            return Err(Error::invalid("revisit", "this revisit is already finished"));
        };
        let attempts = attempts + 1;
        let (next, event) = match outcome {
            RevisitOutcome::Satisfied => (RevisitTask::Finished { outcome }, Some(EventKind::Closed { resolution: Resolution::Satisfied })),
            // Reopening needs the rework deadline, which the dispatcher sets.
            RevisitOutcome::Unsatisfied => (RevisitTask::Finished { outcome }, None),
            RevisitOutcome::Unreachable if attempts >= policy.max_attempts => {
                (RevisitTask::Finished { outcome }, Some(EventKind::Closed { resolution: Resolution::Unreachable }))
            }
            RevisitOutcome::Unreachable => (RevisitTask::Due { due_at: calendar.add(at, policy.retry_after), attempts }, None),
        };
        *self = next;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn due_one_working_day_after_completion() {
        let t = RevisitTask::new(datetime!(2026-11-20 16:00 +08:00), &RevisitPolicy::default(), &WorkCalendar::default());
        assert_eq!(t, RevisitTask::Due { due_at: datetime!(2026-11-23 16:00 +08:00), attempts: 0 });
    }

    #[test]
    fn unreachable_three_times_on_different_days_closes_as_unreachable() {
        let (p, c) = (RevisitPolicy::default(), WorkCalendar::default());
        let mut t = RevisitTask::new(datetime!(2026-11-23 10:00 +08:00), &p, &c);
        assert_eq!(t.record(RevisitOutcome::Unreachable, datetime!(2026-11-24 10:00 +08:00), &p, &c).unwrap(), None);
        assert_eq!(t, RevisitTask::Due { due_at: datetime!(2026-11-25 10:00 +08:00), attempts: 1 });
        assert_eq!(t.record(RevisitOutcome::Unreachable, datetime!(2026-11-25 10:00 +08:00), &p, &c).unwrap(), None);
        let closed = t.record(RevisitOutcome::Unreachable, datetime!(2026-11-26 10:00 +08:00), &p, &c).unwrap();
        assert_eq!(closed, Some(EventKind::Closed { resolution: Resolution::Unreachable }));
        assert!(t.record(RevisitOutcome::Satisfied, datetime!(2026-11-27 10:00 +08:00), &p, &c).is_err(), "finished");
    }

    #[test]
    fn satisfied_closes_and_unsatisfied_finishes_for_rework() {
        let (p, c) = (RevisitPolicy::default(), WorkCalendar::default());
        let mut t = RevisitTask::new(datetime!(2026-11-23 10:00 +08:00), &p, &c);
        assert_eq!(
            t.record(RevisitOutcome::Satisfied, datetime!(2026-11-23 15:00 +08:00), &p, &c).unwrap(),
            Some(EventKind::Closed { resolution: Resolution::Satisfied })
        );
        let mut t = RevisitTask::new(datetime!(2026-11-23 10:00 +08:00), &p, &c);
        assert_eq!(t.record(RevisitOutcome::Unsatisfied, datetime!(2026-11-23 15:00 +08:00), &p, &c).unwrap(), None);
        assert_eq!(t, RevisitTask::Finished { outcome: RevisitOutcome::Unsatisfied });
    }
}

//! Revisits ("really done, really closed"): every completed ticket is
//! revisited; the citizen is satisfied (closed), unsatisfied (reopened for
//! rework at the same unit) or unreachable, which is tried again on another
//! day and, after the last try, closes the ticket as unreachable.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::calendar::{Span, WorkCalendar};
use crate::event::{EventKind, Resolution, RevisitOutcome};
use crate::{Error, Result, TicketId};

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

impl RevisitPolicy {
    /// When the revisit of a ticket completed at `completed_at` is due.
    pub fn first_due(&self, completed_at: OffsetDateTime, calendar: &WorkCalendar) -> OffsetDateTime {
        calendar.add(completed_at, self.due_within)
    }

    /// When the next try is due after an unreachable one at `at`.
    pub fn retry_at(&self, at: OffsetDateTime, calendar: &WorkCalendar) -> OffsetDateTime {
        calendar.add(at, self.retry_after)
    }
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
        RevisitTask::Due { due_at: policy.first_due(completed_at, calendar), attempts: 0 }
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
            // Reopening needs the rework deadline (DeadlinePolicy::rework): the caller, who holds the policy, adds it.
            RevisitOutcome::Unsatisfied => (RevisitTask::Finished { outcome }, None),
            RevisitOutcome::Unreachable if attempts >= policy.max_attempts => {
                (RevisitTask::Finished { outcome }, Some(EventKind::Closed { resolution: Resolution::Unreachable }))
            }
            RevisitOutcome::Unreachable => (RevisitTask::Due { due_at: policy.retry_at(at, calendar), attempts }, None),
        };
        *self = next;
        Ok(event)
    }
}

/// The signed part of a citizen's revisit link (`/r/<token>`): the ticket
/// id and an HMAC-SHA256 over it, so a link cannot be forged for another
/// ticket. The key is the `[revisit] link_secret` both the notifier (which
/// sends the link) and the revisit service (which answers it) hold.
pub fn link_token(secret: &[u8], ticket: &TicketId) -> String {
    format!("{ticket}.{}", link_mac(secret, ticket))
}

fn link_mac(secret: &[u8], ticket: &TicketId) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"whistle-revisit-link:");
    mac.update(ticket.to_string().as_bytes());
    mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The ticket a revisit link is for, if its signature holds.
pub fn verify_link(secret: &[u8], token: &str) -> Result<TicketId> {
    let (id, mac) = token.split_once('.').ok_or_else(|| Error::invalid("link", "not a revisit link"))?;
    let ticket = TicketId::parse(id).map_err(|_| Error::invalid("link", "not a revisit link"))?;
    // Constant-time enough: the comparison covers the whole MAC either way.
    let expected = link_mac(secret, &ticket);
    let same = expected.len() == mac.len() && expected.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(Error::invalid("link", "the link's signature does not match"));
    }
    Ok(ticket)
}

/// A citizen's answer by SMS reply or link: "1" satisfied, "2" not
/// satisfied, optionally followed by the reason ("2 still leaking").
pub fn parse_answer(text: &str) -> Result<(RevisitOutcome, String)> {
    let text = text.trim();
    let mut chars = text.chars();
    let outcome = match chars.next() {
        Some('1') | Some('１') => RevisitOutcome::Satisfied,
        Some('2') | Some('２') => RevisitOutcome::Unsatisfied,
        _ => return Err(Error::invalid("answer", "reply 1 (satisfied) or 2 (not satisfied), optionally followed by the reason")),
    };
    let reason = chars.as_str().trim_start_matches([' ', ',', '，', ':', '：', '.', '。']).trim().to_owned();
    Ok((outcome, reason))
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

    #[test]
    fn links_are_signed_per_ticket() {
        let t = TicketId::new();
        let token = link_token(b"secret", &t);
        assert_eq!(verify_link(b"secret", &token).unwrap(), t);
        assert!(verify_link(b"other", &token).is_err(), "another key");
        let forged = format!("{}.{}", TicketId::new(), token.split_once('.').unwrap().1);
        assert!(verify_link(b"secret", &forged).is_err(), "another ticket");
    }

    #[test]
    fn answers_are_one_or_two_with_a_reason() {
        assert_eq!(parse_answer(" 1").unwrap(), (RevisitOutcome::Satisfied, String::new()));
        assert_eq!(parse_answer("2，还在漏水").unwrap(), (RevisitOutcome::Unsatisfied, "还在漏水".into()));
        assert_eq!(parse_answer("2 still leaking").unwrap(), (RevisitOutcome::Unsatisfied, "still leaking".into()));
        assert!(parse_answer("yes").is_err());
    }
}

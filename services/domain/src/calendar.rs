//! How deadlines are counted: spans in wall-clock time or in working days on
//! a city's calendar (weekends, public holidays, make-up working days), and
//! the per-urgency policy.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use time::{Date, Duration, OffsetDateTime, UtcOffset, Weekday};

use crate::{Error, Result, Urgency};

/// A length of time a ticket is given: wall-clock (`2h`, `90m`, `30s`) or
/// working days (`5wd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Span {
    Clock(Duration),
    WorkingDays(u32),
}

impl Span {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || Error::invalid("span", format!("{s:?} is not a span like 2h, 90m, 30s, 500ms or 5wd"));
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u32 = n.parse().map_err(|_| bad())?;
        let span = match unit {
            "wd" => Span::WorkingDays(n),
            "h" => Span::Clock(Duration::hours(n.into())),
            "m" => Span::Clock(Duration::minutes(n.into())),
            "s" => Span::Clock(Duration::seconds(n.into())),
            "ms" => Span::Clock(Duration::milliseconds(n.into())),
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err(Error::invalid("span", format!("{s:?} is zero")));
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::WorkingDays(n) => write!(f, "{n}wd"),
            Span::Clock(d) if d.whole_milliseconds() % 1000 != 0 => {
                write!(f, "{}ms", d.whole_milliseconds())
            }
            Span::Clock(d) if d.whole_seconds() % 3600 == 0 => write!(f, "{}h", d.whole_hours()),
            Span::Clock(d) if d.whole_seconds() % 60 == 0 => write!(f, "{}m", d.whole_minutes()),
            Span::Clock(d) => write!(f, "{}s", d.whole_seconds()),
        }
    }
}

impl FromStr for Span {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Span::parse(s)
    }
}

impl TryFrom<String> for Span {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Span::parse(&s)
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.to_string()
    }
}

/// Which days are working days, in the city's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarConfig")]
pub struct WorkCalendar {
    offset: UtcOffset,
    holidays: BTreeSet<Date>,
    makeup_workdays: BTreeSet<Date>,
}

/// The calendar as written in config: `utc_offset = "+08:00"`, dates as
/// `YYYY-MM-DD`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CalendarConfig {
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    #[serde(default)]
    pub holidays: Vec<String>,
    #[serde(default)]
    pub makeup_workdays: Vec<String>,
}

fn default_offset() -> String {
    "+08:00".to_owned()
}

impl TryFrom<CalendarConfig> for WorkCalendar {
    type Error = Error;
    fn try_from(c: CalendarConfig) -> Result<Self> {
        let offset = UtcOffset::parse(&c.utc_offset, time::macros::format_description!("[offset_hour]:[offset_minute]"))
            .map_err(|e| Error::invalid("utc_offset", format!("{:?}: {e}", c.utc_offset)))?;
        let date = |s: &String| {
            Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|e| Error::invalid("calendar", format!("{s:?} is not a YYYY-MM-DD date: {e}")))
        };
        Ok(WorkCalendar {
            offset,
            holidays: c.holidays.iter().map(date).collect::<Result<_>>()?,
            makeup_workdays: c.makeup_workdays.iter().map(date).collect::<Result<_>>()?,
        })
    }
}

impl Default for WorkCalendar {
    /// Weekends off, no holidays, China Standard Time.
    fn default() -> Self {
        WorkCalendar {
            offset: UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC),
            holidays: BTreeSet::new(),
            makeup_workdays: BTreeSet::new(),
        }
    }
}

impl WorkCalendar {
    pub fn new(offset: UtcOffset, holidays: impl IntoIterator<Item = Date>, makeup_workdays: impl IntoIterator<Item = Date>) -> Self {
        WorkCalendar { offset, holidays: holidays.into_iter().collect(), makeup_workdays: makeup_workdays.into_iter().collect() }
    }

    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    pub fn is_working_day(&self, d: Date) -> bool {
        if self.makeup_workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    /// `from` plus `span`. Working days keep the local time of day; a start on
    /// a non-working day counts from the start of the next working day.
    /// `from` plus `span`. Never panics: at the edge of what a time can
    /// hold (year 9999) the answer is `from` itself.
    pub fn add(&self, from: OffsetDateTime, span: Span) -> OffsetDateTime {
        match span {
            Span::Clock(d) => from.checked_add(d).unwrap_or(from),
            Span::WorkingDays(n) => {
                let Some(mut local) = from.checked_to_offset(self.offset) else { return from };
                if !self.is_working_day(local.date()) {
                    let mut d = local.date();
                    while !self.is_working_day(d) {
                        d = d.next_day().unwrap_or(d);
                    }
                    local = d.midnight().assume_offset(self.offset);
                }
                let mut date = local.date();
                let mut left = n;
                while left > 0 {
                    date = match date.next_day() {
                        Some(d) => d,
                        None => break,
                    };
                    if self.is_working_day(date) {
                        left -= 1;
                    }
                }
                local.replace_date(date).checked_to_offset(UtcOffset::UTC).unwrap_or(from)
            }
        }
    }
}

/// Deadlines per request type, and the other time rules of a city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadlinePolicy {
    pub urgent: Span,
    pub important: Span,
    pub ordinary: Span,
    pub consultation: Span,
    pub rework: Span,
    /// How long a unit may take to return a misrouted ticket.
    pub return_window: Span,
    /// The longest extension a platform may grant.
    pub max_extension: Span,
    /// Share of the span after which desks are warned (0 disables).
    pub warning_share: f64,
}

impl Default for DeadlinePolicy {
    /// The default policy of `shared/domain.md`.
    fn default() -> Self {
        DeadlinePolicy {
            urgent: Span::Clock(Duration::hours(2)),
            important: Span::WorkingDays(1),
            ordinary: Span::WorkingDays(5),
            consultation: Span::WorkingDays(3),
            rework: Span::WorkingDays(3),
            return_window: Span::WorkingDays(2),
            max_extension: Span::WorkingDays(10),
            warning_share: 0.8,
        }
    }
}

impl DeadlinePolicy {
    /// The deadline of an assignment made at `from` for `span`: first
    /// overdue at the end of the span, second one span later on the same
    /// calendar, warning after `warning_share` of the time to the first.
    pub fn deadline(&self, calendar: &WorkCalendar, from: OffsetDateTime, span: Span, version: crate::EventId) -> crate::Deadline {
        let due_at = calendar.add(from, span);
        let second_due_at = calendar.add(due_at, span);
        crate::Deadline { due_at, second_due_at, warn_at: self.warn_at(from, due_at), span: due_at - from, version }
    }

    /// When a unit may no longer return a ticket assigned to it at `assigned_at`.
    pub fn return_closes_at(&self, calendar: &WorkCalendar, assigned_at: OffsetDateTime) -> OffsetDateTime {
        calendar.add(assigned_at, self.return_window)
    }

    /// The deadline a granted extension gives, asked at `now` for `due_at`:
    /// after the current deadline and at most `max_extension` beyond it; the
    /// second overdue one urgency span later, the warning at the usual share
    /// of the time left.
    pub fn extend(
        &self,
        calendar: &WorkCalendar,
        current: &crate::Deadline,
        urgency: Urgency,
        now: OffsetDateTime,
        due_at: OffsetDateTime,
        version: crate::EventId,
    ) -> crate::Result<crate::Deadline> {
        let latest = calendar.add(current.due_at, self.max_extension);
        if due_at <= current.due_at || due_at > latest {
            return Err(crate::Error::invalid(
                "due_at",
                format!("must be after the current deadline {} and at most {} ({} more)", current.due_at, latest, self.max_extension),
            ));
        }
        if due_at <= now {
            return Err(crate::Error::invalid("due_at", format!("{due_at} has already passed")));
        }
        let second_due_at = calendar.add(due_at, self.span_for(urgency));
        Ok(crate::Deadline { due_at, second_due_at, warn_at: self.warn_at(now, due_at), span: due_at - now, version })
    }

    /// Desks are warned after `warning_share` of the time from `from` to `due_at`.
    fn warn_at(&self, from: OffsetDateTime, due_at: OffsetDateTime) -> Option<OffsetDateTime> {
        let share = self.warning_share;
        (share > 0.0 && share < 1.0 && due_at > from).then(|| from + (due_at - from) * share)
    }

    /// The deadline of a ticket reopened for rework at `from` (the citizen
    /// was not satisfied).
    pub fn rework(&self, calendar: &WorkCalendar, from: OffsetDateTime, version: crate::EventId) -> crate::Deadline {
        self.deadline(calendar, from, self.rework, version)
    }

    pub fn span_for(&self, urgency: Urgency) -> Span {
        match urgency {
            Urgency::Urgent => self.urgent,
            Urgency::Important => self.important,
            Urgency::Ordinary => self.ordinary,
            Urgency::Consultation => self.consultation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn cal() -> WorkCalendar {
        // 2026 National Day week: Oct 1-7 off, Sunday Sep 27 and Saturday Oct 10 worked.
        WorkCalendar::new(
            UtcOffset::from_hms(8, 0, 0).unwrap(),
            (1..=7).map(|d| Date::from_calendar_date(2026, time::Month::October, d).unwrap()),
            [date!(2026 - 09 - 27), date!(2026 - 10 - 10)],
        )
    }

    #[test]
    fn spans_parse_and_print() {
        for s in ["2h", "90m", "30s", "5wd", "250ms"] {
            assert_eq!(Span::parse(s).unwrap().to_string(), s);
        }
        assert!(Span::parse("0h").is_err());
        assert!(Span::parse("5 days").is_err());
    }

    #[test]
    fn friday_afternoon_lands_on_monday() {
        let fri = datetime!(2026-11-20 15:00 +08:00);
        assert_eq!(cal().add(fri, Span::WorkingDays(1)), datetime!(2026-11-23 15:00 +08:00));
    }

    #[test]
    fn holiday_week_is_skipped_and_makeup_day_counts() {
        // Wednesday Sep 30 + 1 working day: Oct 1-7 are off, Thu Oct 8 is next.
        assert_eq!(cal().add(datetime!(2026-09-30 10:00 +08:00), Span::WorkingDays(1)), datetime!(2026-10-08 10:00 +08:00));
        // Friday Oct 9 + 1: Saturday Oct 10 is a make-up working day.
        assert_eq!(cal().add(datetime!(2026-10-09 10:00 +08:00), Span::WorkingDays(1)), datetime!(2026-10-10 10:00 +08:00));
    }

    #[test]
    fn start_on_a_day_off_counts_from_next_working_day() {
        let sat = datetime!(2026-11-21 11:00 +08:00);
        assert_eq!(cal().add(sat, Span::WorkingDays(1)), datetime!(2026-11-24 00:00 +08:00));
    }

    #[test]
    fn second_overdue_is_one_more_span_on_the_calendar() {
        let policy = DeadlinePolicy::default();
        let fri = datetime!(2026-11-20 15:00 +08:00);
        let d = policy.deadline(&cal(), fri, Span::WorkingDays(1), crate::EventId::new());
        assert_eq!(d.due_at, datetime!(2026-11-23 15:00 +08:00));
        assert_eq!(d.second_due_at, datetime!(2026-11-24 15:00 +08:00));
        // 80% of the 72 hours to Monday 15:00
        assert_eq!(d.warn_at, Some(fri + time::Duration::hours(72) * 0.8));
        let no_warning = DeadlinePolicy { warning_share: 0.0, ..policy };
        assert_eq!(no_warning.deadline(&cal(), fri, Span::WorkingDays(1), crate::EventId::new()).warn_at, None);
    }

    #[test]
    fn the_return_window_closes_two_working_days_after_assignment() {
        let fri = datetime!(2026-11-20 15:00 +08:00);
        assert_eq!(DeadlinePolicy::default().return_closes_at(&cal(), fri), datetime!(2026-11-24 15:00 +08:00));
    }

    #[test]
    fn an_extension_is_bounded_and_gets_a_second_overdue_and_a_warning() {
        let policy = DeadlinePolicy::default();
        let now = datetime!(2026-11-23 10:00 +08:00);
        let current = policy.deadline(&cal(), now, Span::WorkingDays(5), crate::EventId::new());
        assert_eq!(current.due_at, datetime!(2026-11-30 10:00 +08:00));
        let v = crate::EventId::new();
        let d = policy.extend(&cal(), &current, Urgency::Ordinary, now, datetime!(2026-12-03 10:00 +08:00), v).unwrap();
        assert_eq!(d.due_at, datetime!(2026-12-03 10:00 +08:00));
        assert_eq!(d.second_due_at, datetime!(2026-12-10 10:00 +08:00), "one ordinary span (5 working days) later");
        assert_eq!(d.warn_at, Some(now + time::Duration::days(10) * 0.8));
        assert_eq!((d.span, d.version), (time::Duration::days(10), v));
        // Not earlier than the current deadline, not past ten more working days.
        for bad in [current.due_at, datetime!(2026-11-29 10:00 +08:00), datetime!(2026-12-14 10:01 +08:00)] {
            let e = policy.extend(&cal(), &current, Urgency::Ordinary, now, bad, v).unwrap_err();
            assert_eq!(e.field(), Some("due_at"), "{bad}: {e}");
        }
        assert!(policy.extend(&cal(), &current, Urgency::Ordinary, now, datetime!(2026-12-14 10:00 +08:00), v).is_ok());
        // An overdue ticket is given a new deadline in the future only.
        let late = datetime!(2026-12-02 10:00 +08:00);
        let e = policy.extend(&cal(), &current, Urgency::Ordinary, late, datetime!(2026-12-01 10:00 +08:00), v).unwrap_err();
        assert!(e.to_string().contains("has already passed"), "{e}");
    }

    #[test]
    fn rework_gets_three_working_days() {
        let d = DeadlinePolicy::default().rework(&cal(), datetime!(2026-11-24 10:00 +08:00), crate::EventId::new());
        assert_eq!((d.due_at, d.second_due_at), (datetime!(2026-11-27 10:00 +08:00), datetime!(2026-12-02 10:00 +08:00)));
    }

    #[test]
    fn the_end_of_time_does_not_panic() {
        let end = datetime!(9999-12-31 23:59 UTC);
        assert_eq!(cal().add(end, Span::WorkingDays(1)), end);
        assert_eq!(cal().add(end, Span::parse("2h").unwrap()), end);
    }

    #[test]
    fn clock_spans_ignore_the_calendar() {
        let sat = datetime!(2026-11-21 23:00 +08:00);
        assert_eq!(cal().add(sat, Span::parse("2h").unwrap()), datetime!(2026-11-22 01:00 +08:00));
    }
}

//! The unit heads' monthly summary: on the configured day and hour of each
//! month, every unit head in the city file gets last month's figures of
//! their unit by SMS (and email if they have a mailbox). Each head gets it
//! once: deliveries are marked per (month, head, channel), and the month is
//! marked done when every head has it; a gateway outage is tried again at
//! the next look.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use time::{Date, Month, OffsetDateTime, UtcOffset};
use whistle_domain::Clock;
use whistle_domain::figures::{Figures, Scope, percent};
use whistle_runtime::shutdown::sleep_or_shutdown;
use whistle_runtime::{KafkaConfig, Shutdown};

use crate::i18n::Catalog;
use crate::messages::About;
use crate::{Deliverer, Message, Recipient, Template, Undelivered};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SummarySettings {
    pub enabled: bool,
    /// Day of the month (1-28) and hour (city time) it goes out.
    pub day: u8,
    pub hour: u8,
    /// How long after the send time a notifier that was down still sends
    /// it (a notifier first started mid-month does not send last month's).
    pub catch_up_hours: u32,
    /// How often the schedule is looked at.
    pub poll_ms: u64,
}

impl Default for SummarySettings {
    fn default() -> Self {
        SummarySettings { enabled: true, day: 1, hour: 9, catch_up_hours: 72, poll_ms: 60_000 }
    }
}

/// The month a summary covers: `[start, end)` in city time, and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub year: i32,
    pub month: Month,
}

impl Period {
    pub fn label(&self) -> String {
        format!("{}-{:02}", self.year, self.month as u8)
    }
}

fn first_of(year: i32, month: Month, offset: UtcOffset) -> OffsetDateTime {
    Date::from_calendar_date(year, month, 1).expect("the first of a month exists").midnight().assume_offset(offset)
}

/// The month due for a summary at `now`, if the send time of this month has come.
pub fn due_period(now: OffsetDateTime, offset: UtcOffset, s: &SummarySettings) -> Option<Period> {
    let local = now.to_offset(offset);
    let this_month = first_of(local.year(), local.month(), offset);
    let send_at = this_month + time::Duration::days(i64::from(s.day.clamp(1, 28)) - 1) + time::Duration::hours(i64::from(s.hour.min(23)));
    if local < send_at || local >= send_at + time::Duration::hours(i64::from(s.catch_up_hours)) {
        return None;
    }
    let (year, month) =
        if local.month() == Month::January { (local.year() - 1, Month::December) } else { (local.year(), local.month().previous()) };
    Some(Period { start: first_of(year, month, offset), end: this_month, year, month })
}

pub struct Monthly {
    deliverer: Arc<Deliverer>,
    catalog: Arc<Catalog>,
    kafka: KafkaConfig,
    offset: UtcOffset,
    settings: SummarySettings,
    clock: Arc<dyn Clock>,
}

impl Monthly {
    pub fn new(
        deliverer: Arc<Deliverer>,
        catalog: Arc<Catalog>,
        kafka: KafkaConfig,
        offset: UtcOffset,
        settings: SummarySettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Monthly { deliverer, catalog, kafka, offset, settings, clock }
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<(), std::convert::Infallible> {
        loop {
            if let Some(period) = due_period(self.clock.now(), self.offset, &self.settings) {
                match self.send(period).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(month = %period.label(), heads = n, "monthly summary sent"),
                    Err(reason) => tracing::warn!(month = %period.label(), %reason, "monthly summary not finished; trying again"),
                }
            }
            if !sleep_or_shutdown(Duration::from_millis(self.settings.poll_ms.max(10)), &shutdown).await {
                return Ok(());
            }
        }
    }

    /// The messages of one month, one per unit head.
    pub fn messages(&self, period: Period, figures: &Figures) -> Vec<Message> {
        let d = &self.deliverer;
        let label = period.label();
        d.directory
            .heads
            .iter()
            .map(|(unit, _)| {
                let c = figures.get(&Scope::Unit(unit.clone()));
                let recipient = Recipient::UnitHead { unit: unit.to_string() };
                let lang = d.directory.language_of(&recipient);
                let name = d.directory.unit_names.get(unit.as_str()).cloned().unwrap_or_else(|| unit.to_string());
                let args = [
                    ("unit", name),
                    ("month", label.clone()),
                    ("dispatched", c.dispatched.to_string()),
                    ("completed", c.completed.to_string()),
                    ("on_time", percent(c.on_time_rate())),
                    ("satisfaction", percent(c.satisfaction_rate())),
                    ("reworked", c.reworked.to_string()),
                    ("returned", c.returned.to_string()),
                ];
                let about = About {
                    event_id: format!("summary-{label}"),
                    event: "monthly_summary",
                    ticket_id: String::new(),
                    ticket_number: String::new(),
                };
                Message::render(&self.catalog, about, Template::MonthlySummary, lang, recipient, &args)
            })
            .collect()
    }

    /// Sends the month's summaries not sent yet; returns how many heads got
    /// one now (0 when the month was already done).
    async fn send(&self, period: Period) -> Result<usize, String> {
        let d = &self.deliverer;
        let done_key = format!("{}summary-done:{}", d.store.prefix(), period.label());
        let mut redis = d.store.redis();
        let done: bool = redis.exists(&done_key).await.map_err(|e| format!("redis: {e}"))?;
        if done {
            return Ok(0);
        }
        let kafka = self.kafka.clone();
        let figures = tokio::task::spawn_blocking(move || whistle_runtime::kafka::figures(&kafka, period.start, period.end))
            .await
            .map_err(|e| whistle_runtime::Error::task("figures", e).to_string())?
            .map_err(|e| format!("figures: {e}"))?;
        let messages = self.messages(period, &figures);
        let mut refused = Vec::new();
        for m in &messages {
            match d.deliver(m).await {
                Ok(()) => {}
                Err(Undelivered::Wait(reason)) => return Err(reason),
                // A head's number the gateway refuses is not tried every minute.
                Err(Undelivered::Give(reason)) => refused.push(reason),
            }
        }
        for r in &refused {
            tracing::error!(reason = %r, "monthly summary refused");
        }
        let _: () = redis.set_ex(&done_key, 1, 400 * 24 * 3600).await.map_err(|e| format!("redis: {e}"))?;
        Ok(messages.len() - refused.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn the_summary_of_last_month_is_due_from_the_configured_day_and_hour() {
        let s = SummarySettings { day: 1, hour: 9, ..SummarySettings::default() };
        let o = offset!(+8);
        assert_eq!(due_period(datetime!(2026-12-01 08:59 +08:00), o, &s), None);
        let p = due_period(datetime!(2026-12-01 09:00 +08:00), o, &s).unwrap();
        assert_eq!((p.start, p.end, p.label()), (datetime!(2026-11-01 00:00 +08:00), datetime!(2026-12-01 00:00 +08:00), "2026-11".into()));
        let p = due_period(datetime!(2027-01-02 01:00 UTC), o, &s).unwrap();
        assert_eq!(p.label(), "2026-12", "January looks back to December");
        assert_eq!(due_period(datetime!(2026-12-04 08:59 +08:00), o, &s).map(|p| p.label()), Some("2026-11".into()), "caught up");
        assert_eq!(due_period(datetime!(2026-12-04 09:00 +08:00), o, &s), None, "too late: not mid-month");
    }
}

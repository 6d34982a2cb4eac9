//! The figures of a period, folded from the whole events topic (Kafka is the
//! record; nothing here is kept between calls).

use time::OffsetDateTime;
use whistle_domain::figures::{Counts, Figures, Scope};
use whistle_proto::v1 as pb;
use whistle_runtime::KafkaConfig;

use crate::{Error, Result};

/// `2026-11-01` (midnight, city time) or RFC 3339.
pub fn parse_instant(field: &str, s: &str, offset: time::UtcOffset) -> Result<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| Error::Invalid(format!("{field}: {s:?} is neither YYYY-MM-DD nor an RFC 3339 time")))?;
    Ok(date.midnight().assume_offset(offset))
}

/// Folds every event of the topic into the figures of `[from, to)` (the
/// caller has checked that the period is not empty).
pub async fn compute(kafka: &KafkaConfig, from: OffsetDateTime, to: OffsetDateTime) -> Result<Figures> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || whistle_runtime::kafka::figures(&kafka, from, to))
        .await
        .map_err(|e| whistle_runtime::Error::task("figures fold", e))?
        .map_err(Error::from)
}

pub fn row(scope: &Scope, c: &Counts) -> pb::FigureRow {
    let (kind, code) = match scope {
        Scope::City => ("city", String::new()),
        Scope::Platform(p) => ("platform", p.to_string()),
        Scope::Unit(u) => ("unit", u.to_string()),
    };
    pb::FigureRow {
        scope: kind.into(),
        code,
        received: c.received,
        dispatched: c.dispatched,
        completed: c.completed,
        on_time: c.on_time,
        returned: c.returned,
        revisited: c.revisited,
        satisfied: c.satisfied,
        unsatisfied: c.unsatisfied,
        unreachable: c.unreachable,
        reworked: c.reworked,
        on_time_rate: c.on_time_rate(),
        feedback_rate: c.feedback_rate(),
        revisit_coverage: c.revisit_coverage(),
        satisfaction_rate: c.satisfaction_rate(),
        rework_rate: c.rework_rate(),
        return_rate: c.return_rate(),
    }
}

/// The rows a request asks for: `scope` all/city/platforms/units, `code` one of them.
pub fn select(f: &Figures, scope: &str, code: &str) -> Result<Vec<pb::FigureRow>> {
    let want = |s: &Scope| match scope {
        "" | "all" => true,
        "city" => matches!(s, Scope::City),
        "platforms" | "platform" => matches!(s, Scope::Platform(_)),
        "units" | "unit" => matches!(s, Scope::Unit(_)),
        _ => false,
    };
    if !matches!(scope, "" | "all" | "city" | "platforms" | "platform" | "units" | "unit") {
        return Err(Error::Invalid(format!("scope: {scope:?} is not all, city, platforms or units")));
    }
    let mut rows: Vec<pb::FigureRow> = f
        .rows()
        .filter(|(s, _)| want(s))
        .filter(|(s, _)| {
            code.is_empty()
                || match s {
                    Scope::City => false,
                    Scope::Platform(p) => p.to_string() == code,
                    Scope::Unit(u) => u.as_str() == code,
                }
        })
        .map(|(s, c)| row(s, c))
        .collect();
    // The city row always answers a city-wide question, even for a quiet period.
    if rows.is_empty() && code.is_empty() && matches!(scope, "" | "all" | "city") {
        rows.push(row(&Scope::City, &f.get(&Scope::City)));
    }
    Ok(rows)
}

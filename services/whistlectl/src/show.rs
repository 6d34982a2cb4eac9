//! What each command shows: the same result as text for a person and as
//! JSON for a script (`--json`). Times in the city's offset.

use serde_json::{Value, json};
use whistle_domain::figures::percent;
use whistle_proto::v1 as pb;

/// A result, ready to print either way.
pub(crate) struct Shown {
    pub(crate) json: Value,
    pub(crate) text: String,
}

impl Shown {
    pub(crate) fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
    }
}

pub(crate) fn ts(t: &Option<whistle_proto::prost_types::Timestamp>, offset: time::UtcOffset) -> String {
    t.as_ref()
        .and_then(|t| whistle_proto::to_datetime(t).ok())
        .and_then(|t| {
            t.to_offset(offset)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
                ))
                .ok()
        })
        .unwrap_or_default()
}

pub(crate) fn submitted(r: &pb::SubmitRequestResponse) -> Shown {
    Shown {
        json: json!({"ticket_id": r.ticket_id, "ticket_number": r.ticket_number, "duplicate": r.duplicate}),
        text: format!("ticket number {}{}\n", r.ticket_number, if r.duplicate { " (already registered)" } else { "" }),
    }
}

pub(crate) fn ticket(t: &pb::TicketView, offset: time::UtcOffset) -> Shown {
    let j = t.jurisdiction.clone().unwrap_or_default();
    let rows = [
        ("number", t.ticket_number.clone()),
        ("id", t.ticket_id.clone()),
        ("state", t.state.clone()),
        ("channel", t.channel.clone()),
        ("category", t.category.clone()),
        ("urgency", t.urgency.clone()),
        ("whistle level", t.whistle_level.clone()),
        ("county", j.county),
        ("street", j.street),
        ("community", j.community),
        ("platform", t.platform.clone()),
        ("unit", t.unit.clone()),
        ("deadline", ts(&t.deadline, offset)),
        ("overdue level", t.overdue_level.to_string()),
        ("supervised", t.supervised.to_string()),
        ("result", t.result.clone()),
        ("resolution", t.resolution.clone()),
        ("received", ts(&t.received_at, offset)),
        ("updated", ts(&t.updated_at, offset)),
        ("text", t.text.clone()),
    ];
    let map: serde_json::Map<String, Value> = rows.iter().map(|(k, v)| (k.replace(' ', "_"), Value::String(v.clone()))).collect();
    Shown { json: Value::Object(map), text: rows.iter().map(|(k, v)| format!("{k:>14}  {v}\n")).collect() }
}

/// A desk action done: what it was, on which ticket.
pub(crate) fn done(what: &str, r: &pb::ActionResponse) -> Shown {
    Shown { json: json!({"ticket_id": r.ticket_id, "event_id": r.event_id}), text: format!("{what} ticket {}\n", r.ticket_id) }
}

/// What waits on a desk now, one row a ticket.
pub(crate) fn waiting(entries: &[pb::QueueEntry], offset: time::UtcOffset) -> Shown {
    let mut text =
        format!("{:<16} {:<15} {:<14} {:<10} {:<26} {:<4} text\n", "ticket", "waiting", "category", "urgency", "deadline", "late");
    let mut json = Vec::new();
    for e in entries {
        let Some(t) = &e.ticket else { continue };
        let deadline = if t.deadline.is_some() { ts(&t.deadline, offset) } else { "-".to_owned() };
        let summary: String = t.text.chars().take(30).collect();
        text += &format!(
            "{:<16} {:<15} {:<14} {:<10} {:<26} {:<4} {}\n",
            t.ticket_number, e.group, t.category, t.urgency, deadline, t.overdue_level, summary
        );
        json.push(json!({"ticket_number": t.ticket_number, "ticket_id": t.ticket_id, "group": e.group, "category": t.category, "urgency": t.urgency, "deadline": deadline, "overdue_level": t.overdue_level, "state": t.state}));
    }
    if entries.is_empty() {
        text += "(nothing waits on this desk)\n";
    }
    Shown { json: Value::Array(json), text }
}

pub(crate) fn queue_header() -> String {
    format!("{:<28} {:<11} {:<38} {:<26} reason", "at", "event", "ticket", "from")
}

pub(crate) fn queue_item(item: &pb::QueueItem, offset: time::UtcOffset) -> Shown {
    let at = ts(&item.at, offset);
    let event = if item.overdue_level > 0 { format!("{}{}", item.event, item.overdue_level) } else { item.event.clone() };
    Shown {
        json: json!({"at": at, "event": item.event, "ticket_id": item.ticket_id, "from": item.from, "reason": item.reason, "overdue_level": item.overdue_level}),
        text: format!("{:<28} {:<11} {:<38} {:<26} {}\n", at, event, item.ticket_id, item.from, item.reason),
    }
}

pub(crate) fn revisits(tasks: &[pb::RevisitTask]) -> Shown {
    let json = tasks
        .iter()
        .map(|t| json!({"ticket_number": t.ticket_number, "ticket_id": t.ticket_id, "unit": t.unit, "due_at": t.due_at, "attempts": t.attempts, "claimed_by": t.claimed_by, "phone": t.citizen_phone, "language": t.language, "result": t.result}))
        .collect();
    let mut text = format!("{:<16} {:<26} {:<8} {:<24} {:<12} {:<14} result\n", "ticket", "due", "tries", "unit", "claimed by", "phone");
    for t in tasks {
        let tries = format!("{}/{}", t.attempts, t.max_attempts);
        text += &format!(
            "{:<16} {:<26} {:<8} {:<24} {:<12} {:<14} {}\n",
            t.ticket_number, t.due_at, tries, t.unit, t.claimed_by, t.citizen_phone, t.result
        );
    }
    Shown { json: Value::Array(json), text }
}

pub(crate) fn claimed(t: &pb::RevisitTask) -> Shown {
    Shown {
        json: json!({"ticket_number": t.ticket_number, "claimed_until": t.claimed_until, "phone": t.citizen_phone}),
        text: format!(
            "claimed ticket {} until {}: call {} ({}), result: {}\n",
            t.ticket_number, t.claimed_until, t.citizen_phone, t.language, t.result
        ),
    }
}

pub(crate) fn recorded(r: &pb::RecordResponse) -> Shown {
    let text = match r.next.as_str() {
        "reopened" => format!("ticket {} reopened for rework, due {}\n", r.ticket_number, r.rework_due_at),
        "retry" => format!("ticket {}: try {} recorded, next try due {}\n", r.ticket_number, r.attempts, r.next_due_at),
        _ => format!("ticket {} closed\n", r.ticket_number),
    };
    Shown {
        json: json!({"ticket_number": r.ticket_number, "next": r.next, "attempts": r.attempts, "next_due_at": r.next_due_at, "rework_due_at": r.rework_due_at}),
        text,
    }
}

pub(crate) fn figures(f: &pb::FiguresResponse) -> Shown {
    let rows: Vec<_> = f.rows.iter().map(figure_json).collect();
    Shown { json: json!({"from": f.from, "to": f.to, "source": f.source, "rows": rows}), text: figures_table(f) }
}

pub(crate) fn history(h: &pb::HistoryResponse, offset: time::UtcOffset) -> Shown {
    let rows: Vec<_> = h
        .entries
        .iter()
        .map(|e| json!({"event_id": e.event_id, "event": e.event, "at": ts(&e.at, offset), "actor_kind": e.actor_kind, "actor_id": e.actor_id, "refused": e.refused}))
        .collect();
    let mut text = format!("{:<28} {:<20} {:<10} who\n", "at", "event", "by");
    for e in &h.entries {
        let note = if e.refused.is_empty() { String::new() } else { format!("  (refused: {})", e.refused) };
        text += &format!("{:<28} {:<20} {:<10} {}{note}\n", ts(&e.at, offset), e.event, e.actor_kind, e.actor_id);
    }
    Shown { json: json!({"ticket_id": h.ticket_id, "entries": rows}), text }
}

fn figure_json(r: &pb::FigureRow) -> Value {
    json!({
        "scope": r.scope, "code": r.code, "received": r.received, "dispatched": r.dispatched, "completed": r.completed,
        "on_time": r.on_time, "returned": r.returned, "revisited": r.revisited, "satisfied": r.satisfied,
        "unsatisfied": r.unsatisfied, "unreachable": r.unreachable, "reworked": r.reworked,
        "on_time_rate": r.on_time_rate, "feedback_rate": r.feedback_rate, "revisit_coverage": r.revisit_coverage,
        "satisfaction_rate": r.satisfaction_rate, "rework_rate": r.rework_rate, "return_rate": r.return_rate,
    })
}

/// The figures as a fixed-width table, one row per scope.
fn figures_table(f: &pb::FiguresResponse) -> String {
    let mut out = format!("figures from {} to {} ({})\n", f.from, f.to, f.source);
    out += &format!(
        "{:<34} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
        "scope", "recv", "disp", "done", "on-time", "feedback", "revisit", "satisf", "rework", "return", "unreach"
    );
    for r in &f.rows {
        let scope = if r.code.is_empty() { r.scope.clone() } else { format!("{} {}", r.scope, r.code) };
        out += &format!(
            "{:<34} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
            scope,
            r.received,
            r.dispatched,
            r.completed,
            percent(r.on_time_rate),
            percent(r.feedback_rate),
            percent(r.revisit_coverage),
            percent(r.satisfaction_rate),
            percent(r.rework_rate),
            percent(r.return_rate),
            r.unreachable
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_shows_as_rows_or_json_with_times_in_the_citys_offset() {
        let due = whistle_proto::timestamp(time::macros::datetime!(2026-11-24 02:00 UTC));
        let t =
            pb::TicketView { ticket_number: "20261123000001".into(), state: "assigned".into(), deadline: Some(due), ..Default::default() };
        let shown = ticket(&t, time::macros::offset!(+8));
        assert!(shown.text.contains("      deadline  2026-11-24 10:00:00 +08:00\n"), "{}", shown.text);
        assert_eq!(shown.json["number"], "20261123000001");
        assert_eq!(shown.json["whistle_level"], "", "keys have no spaces");
        let d = done("completed", &pb::ActionResponse { ticket_id: "t-1".into(), event_id: "e-1".into() });
        assert_eq!((d.text.as_str(), d.json["event_id"].as_str()), ("completed ticket t-1\n", Some("e-1")));
    }

    #[test]
    fn figures_print_as_a_table_with_rates_and_dashes() {
        let f = pb::FiguresResponse {
            from: "2026-11-01T00:00:00+08:00".into(),
            to: "2026-12-01T00:00:00+08:00".into(),
            source: "daily tallies".into(),
            rows: vec![
                pb::FigureRow {
                    scope: "city".into(),
                    received: 4,
                    dispatched: 4,
                    completed: 4,
                    on_time_rate: Some(0.75),
                    satisfaction_rate: Some(2.0 / 3.0),
                    ..Default::default()
                },
                pb::FigureRow { scope: "unit".into(), code: "city-water".into(), dispatched: 1, ..Default::default() },
            ],
        };
        let t = figures_table(&f);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("city ") && lines[2].contains("75.0%") && lines[2].contains("66.7%"), "{t}");
        assert!(lines[3].starts_with("unit city-water") && lines[3].contains(" - "), "{t}");
    }
}

//! Following requests: `GET requests.{fmt}` (by ids, or by service, dates
//! and status, at most 90 days and 1,000 requests, newest first),
//! `GET requests/{id}.{fmt}` and `GET tokens/{token}.{fmt}`. A request's
//! status is only open or closed; the notes, the unit in charge and the
//! deadline in force say the rest. No personal data leaves: the
//! description's phone numbers and emails are masked, the address is the
//! street's, a point is rounded to about 100 m.

use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use whistle_domain::{Category, QueueReason, Resolution, TicketId, TicketState};
use whistle_runtime::store::Projection;

use super::doc::Node;
use super::{Fault, Front, catalog};

/// Longest range of one query, and most requests in one answer.
const MAX_DAYS: i64 = 90;
const MAX_RESULTS: usize = 1000;

fn date(q: &HashMap<String, String>, name: &str) -> Result<Option<OffsetDateTime>, Fault> {
    q.get(name)
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| Fault::bad(format!("{name}: {v:?} is not a date and time with a time zone (2010-05-24T00:00:00Z)")))
        })
        .transpose()
}

pub async fn list(front: &Front, q: &HashMap<String, String>) -> Result<Node, Fault> {
    let store_err = |e: whistle_runtime::Error| Fault::unavailable(format!("the tickets cannot be read right now: {e}"));
    // Ids override every other argument.
    if let Some(ids) = q.get("service_request_id") {
        let mut out = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|i| !i.is_empty()).take(MAX_RESULTS) {
            if let Some(p) = front.store.find(id).await.map_err(store_err)? {
                out.push(view(front, &p));
            }
        }
        return Ok(Node::List("request", out));
    }
    let statuses: Vec<bool> = match q.get("status") {
        None => vec![false, true],
        Some(s) => s
            .split(',')
            .map(|v| match v.trim() {
                "open" => Ok(false),
                "closed" => Ok(true),
                other => Err(Fault::bad(format!("status: {other:?} is not open or closed"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let categories: Vec<Category> = match q.get("service_code") {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .map(|c| {
                catalog::find(c.trim())
                    .map(|s| s.category)
                    .ok_or_else(|| Fault::bad(format!("service_code: {:?} does not exist", c.trim())))
            })
            .collect::<Result<_, _>>()?,
    };
    let (start, end) = (date(q, "start_date")?, date(q, "end_date")?);
    let span = time::Duration::days(MAX_DAYS);
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, s + span),
        (None, Some(e)) => (e - span, e),
        (None, None) => {
            let now = front.clock.now();
            (now - span, now)
        }
    };
    if end < start {
        return Err(Fault::bad("end_date is before start_date"));
    }
    if end - start > span {
        return Err(Fault::bad(format!("start_date to end_date spans more than {MAX_DAYS} days")));
    }
    let page_size = match q.get("page_size") {
        None => MAX_RESULTS,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| Fault::bad(format!("page_size: 1 to {MAX_RESULTS}")))?,
    };
    let page = match q.get("page") {
        None => 1,
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| Fault::bad("page: 1 or more"))?,
    };
    // Newest first, filtered by status, in batches until the page is full.
    let (mut found, mut skip, wanted) = (Vec::new(), 0, page * page_size);
    loop {
        let ids = front.store.received_between(Some(start), Some(end), &categories, skip, 500).await.map_err(store_err)?;
        if ids.is_empty() {
            break;
        }
        skip += ids.len();
        for p in front.store.get_many(&ids).await.map_err(store_err)? {
            if statuses.contains(&p.ticket.state.is_closed()) {
                found.push(p);
            }
        }
        if found.len() >= wanted {
            break;
        }
    }
    Ok(Node::List("request", found.iter().skip((page - 1) * page_size).take(page_size).map(|p| view(front, p)).collect()))
}

pub async fn one(front: &Front, id: &str) -> Result<Node, Fault> {
    match front.store.find(id).await.map_err(|e| Fault::unavailable(e.to_string()))? {
        Some(p) => Ok(Node::List("request", vec![view(front, &p)])),
        None => Err(Fault::not_found(format!("service_request_id {id} does not exist"))),
    }
}

/// A token is the ticket's id; it leads to the request's number.
pub async fn token(front: &Front, token: &str) -> Result<Node, Fault> {
    let id = TicketId::parse(token).map_err(|_| Fault::not_found(format!("token {token} does not exist")))?;
    // A token is handed out as soon as its request is durable: give the
    // projection a moment to show it before saying it does not exist.
    let started = std::time::Instant::now();
    let found = loop {
        let p = front.store.get(&id).await.map_err(|e| Fault::unavailable(e.to_string()))?;
        if p.is_some() || started.elapsed() > std::time::Duration::from_secs(3) {
            break p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    match found {
        Some(p) => Ok(Node::List(
            "request",
            vec![Node::Object(vec![("service_request_id", Node::text(p.ticket.number.to_string())), ("token", Node::text(token))])],
        )),
        None => Err(Fault::not_found(format!("token {token} does not exist"))),
    }
}

/// The unit that completed the ticket, from the trail (a closed ticket no
/// longer holds its assignment).
pub fn last_unit(p: &Projection) -> Option<String> {
    if let Some(a) = p.ticket.state.open_assignment() {
        return Some(a.unit.to_string());
    }
    if let TicketState::Completed { assignment, .. } = &p.ticket.state {
        return Some(assignment.unit.to_string());
    }
    p.history.iter().rev().find(|h| h.event == "completed" && h.refused.is_none()).map(|h| h.actor.id.clone())
}

/// Status, notes and the deadline in force.
fn status(p: &Projection, unit: Option<&str>) -> (&'static str, Option<String>, Option<OffsetDateTime>) {
    let t = &p.ticket;
    let at = |what: &str| unit.map_or_else(|| what.to_owned(), |u| format!("{what} {u}"));
    match &t.state {
        TicketState::Received | TicketState::Classified => ("open", Some("received".into()), None),
        TicketState::Queued { reason, .. } => (
            "open",
            Some(match reason {
                QueueReason::Triage => "being checked by the city desk".into(),
                QueueReason::Delegated { .. } => "waiting to be dispatched".into(),
                QueueReason::Whistled { .. } => "escalated to a higher platform".into(),
                QueueReason::Returned { reason, .. } => format!("returned by the unit: {reason}"),
            }),
            None,
        ),
        TicketState::Assigned(a) => ("open", Some(at("dispatched to")), Some(a.deadline.due_at)),
        TicketState::Acknowledged(a) => ("open", Some(at("in progress at")), Some(a.deadline.due_at)),
        TicketState::Completed { result, assignment, .. } => {
            ("open", Some(format!("completed: {result}")), Some(assignment.deadline.due_at))
        }
        TicketState::Closed { resolution } => (
            "closed",
            Some(match resolution {
                Resolution::Answered => "answered".into(),
                Resolution::Satisfied | Resolution::Unreachable => t.last_result.clone().unwrap_or_else(|| "closed".into()),
            }),
            None,
        ),
    }
}

/// One `<request>`, in the spec's order of fields.
pub fn view(front: &Front, p: &Projection) -> Node {
    let t = &p.ticket;
    let category = t.classification.as_ref().map(|c| c.category).or(t.request.service);
    let service = category.and_then(|c| catalog::find(c.as_str()));
    let unit_code = last_unit(p);
    let unit_name =
        unit_code.as_ref().and_then(|u| whistle_domain::UnitCode::parse(u).ok()).and_then(|u| front.city.unit(&u).map(|u| u.name.clone()));
    let (status, notes, expected) = status(p, unit_name.as_deref());
    let j = t.classification.as_ref().map(|c| &c.jurisdiction);
    let place = j.and_then(|j| j.community.as_deref().or(j.street.as_deref()).or(j.county.as_deref()));
    let round = |v: f64| Node::number((v * 1000.0).round() / 1000.0);
    Node::Object(vec![
        ("service_request_id", Node::text(t.number.to_string())),
        ("status", Node::text(status)),
        ("status_notes", Node::opt(notes)),
        ("service_name", Node::opt(service.as_ref().map(|s| s.name))),
        ("service_code", Node::opt(category.map(|c| c.as_str()))),
        ("description", Node::text(whistle_domain::privacy::mask_contacts(&t.request.text))),
        ("agency_responsible", Node::opt(unit_name)),
        ("service_notice", Node::opt(None::<String>)),
        ("requested_datetime", Node::text(front.time(t.received_at))),
        ("updated_datetime", Node::text(front.time(t.updated_at))),
        ("expected_datetime", Node::opt(expected.map(|e| front.time(e)))),
        ("address", Node::opt(place.and_then(|c| front.city.place_name(c)))),
        ("address_id", Node::opt(place)),
        ("zipcode", Node::opt(None::<String>)),
        ("lat", t.request.location.point.map_or(Node::opt(None::<String>), |g| round(g.lat()))),
        ("long", t.request.location.point.map_or(Node::opt(None::<String>), |g| round(g.lon()))),
        ("media_url", Node::opt(t.request.media_url.clone())),
    ])
}

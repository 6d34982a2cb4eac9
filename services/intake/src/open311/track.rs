//! The citizen's page: `GET /track` (a form) and `GET /track/{number}`,
//! which shows a ticket only to whoever gives the last four digits of the
//! phone it was registered with. An unknown number and a wrong phone read
//! the same, so the page reveals nothing of other people's tickets. No
//! name, phone or address is shown.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;
use whistle_domain::{Language, QueueReason, Resolution, TicketState};
use whistle_runtime::store::Projection;

use super::texts::{self, Texts};
use super::{Front, params, query};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The language asked for (`?lang=`), else the browser's first of the five.
fn language(q: &std::collections::HashMap<String, String>, headers: &HeaderMap) -> Option<Language> {
    if let Some(l) = q.get("lang").and_then(|l| Language::parse(l).ok()) {
        return Some(l);
    }
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept
        .split(',')
        .filter_map(|part| part.split(';').next())
        .map(|t| t.trim().split('-').next().unwrap_or("").to_ascii_lowercase())
        .find_map(|t| Language::parse(&t).ok().filter(|_| !t.is_empty()))
}

fn layout(t: &Texts, body: &str) -> String {
    let switch: String =
        Language::ALL.iter().map(|l| format!("<a href=\"?lang={0}\" lang=\"{0}\">{0}</a>", l.as_str())).collect::<Vec<_>>().join(" · ");
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
dt{{font-weight:bold}}dd{{margin:0 0 .8rem 0}}label{{display:block;margin-top:.8rem}}input{{font-size:1rem;padding:.3rem}}\
button{{margin-top:1rem;font-size:1rem;padding:.4rem 1rem}}nav{{font-size:.9rem}}</style></head>\
<body><nav aria-label=\"language\">{switch}</nav><h1>{title}</h1>{body}</body></html>\n",
        lang = t.lang,
        title = escape(t.title),
    )
}

fn lookup_form(t: &Texts, number: &str, note: Option<&str>) -> String {
    let note = note.map(|n| format!("<p role=\"alert\">{}</p>", escape(n))).unwrap_or_default();
    format!(
        "{note}<p>{intro}</p><form method=\"get\" action=\"/track\"><input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
<label for=\"number\">{nl}</label><input id=\"number\" name=\"number\" inputmode=\"numeric\" autocomplete=\"off\" value=\"{number}\" required>\
<label for=\"phone\">{pl}</label><input id=\"phone\" name=\"phone\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"4\" required>\
<button type=\"submit\">{submit}</button></form>",
        intro = escape(t.form_intro),
        lang = t.lang,
        nl = escape(t.number_label),
        pl = escape(t.phone_label),
        number = escape(number),
        submit = escape(t.submit),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// `GET /track`: the form, or the ticket when the form was filled in.
pub async fn form(State(front): State<Arc<Front>>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let q = params(raw.as_deref()).unwrap_or_default();
    match q.get("number") {
        Some(n) => show(&front, n, &q, &headers).await,
        None => {
            let t = texts::of(language(&q, &headers).unwrap_or_default());
            html(StatusCode::OK, layout(t, &lookup_form(t, "", None)))
        }
    }
}

/// `GET /track/{number}?phone=1234`.
pub async fn page(State(front): State<Arc<Front>>, Path(number): Path<String>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let q = params(raw.as_deref()).unwrap_or_default();
    show(&front, &number, &q, &headers).await
}

async fn show(front: &Front, number: &str, q: &std::collections::HashMap<String, String>, headers: &HeaderMap) -> Response {
    let number = number.trim();
    let given: String = q.get("phone").map(|p| p.chars().filter(char::is_ascii_digit).collect()).unwrap_or_default();
    let found = if given.len() >= 4 && whistle_domain::TicketNumber::parse(number).is_ok() {
        match front.store.find(number).await {
            Ok(p) => {
                p.filter(|p| p.ticket.request.contact.phone.as_ref().is_some_and(|ph| ph.expose().ends_with(&given[given.len() - 4..])))
            }
            Err(_) => return html(StatusCode::SERVICE_UNAVAILABLE, "<p>service unavailable, try again shortly</p>".into()),
        }
    } else {
        None
    };
    match found {
        Some(p) => {
            let t = texts::of(language(q, headers).unwrap_or(p.ticket.request.language));
            html(StatusCode::OK, layout(t, &ticket(front, t, &p)))
        }
        None => {
            let t = texts::of(language(q, headers).unwrap_or_default());
            let note = if given.is_empty() { None } else { Some(t.not_found) };
            html(if given.is_empty() { StatusCode::OK } else { StatusCode::NOT_FOUND }, layout(t, &lookup_form(t, number, note)))
        }
    }
}

fn ticket(front: &Front, t: &Texts, p: &Projection) -> String {
    let k = &p.ticket;
    let state = match &k.state {
        TicketState::Received => 0,
        TicketState::Classified | TicketState::Queued { reason: QueueReason::Delegated { .. } | QueueReason::Whistled { .. }, .. } => 1,
        TicketState::Queued { reason: QueueReason::Triage, .. } => 2,
        TicketState::Queued { reason: QueueReason::Returned { .. }, .. } => 3,
        TicketState::Assigned(_) => 4,
        TicketState::Acknowledged(_) => 5,
        TicketState::Completed { .. } => 6,
        TicketState::Closed { resolution: Resolution::Satisfied | Resolution::Unreachable } => 7,
        TicketState::Closed { resolution: Resolution::Answered } => 8,
    };
    let unit = query::last_unit(p)
        .and_then(|u| whistle_domain::UnitCode::parse(&u).ok())
        .and_then(|u| front.city.unit(&u).map(|u| u.name.clone()));
    let deadline = match &k.state {
        TicketState::Assigned(a) | TicketState::Acknowledged(a) => Some(a.deadline.due_at),
        _ => None,
    };
    let local = |d: time::OffsetDateTime| {
        d.to_offset(front.offset).format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")).unwrap_or_default()
    };
    let mut rows =
        vec![(t.number_label, k.number.to_string()), (t.state_label, t.states[state].to_owned()), (t.received_label, local(k.received_at))];
    if let Some(u) = unit {
        rows.push((t.unit_label, u));
    }
    if let Some(d) = deadline {
        rows.push((t.deadline_label, local(d)));
    }
    if let Some(r) = &k.last_result {
        rows.push((t.result_label, r.clone()));
    }
    let mut out = String::from("<dl>");
    for (label, value) in rows {
        out += &format!("<dt>{}</dt><dd>{}</dd>", escape(label), escape(&value));
    }
    out += "</dl>";
    if matches!(k.state, TicketState::Completed { .. }) {
        out += &format!("<p>{} <a href=\"{}\">{}</a></p>", escape(t.revisit), escape(&front.revisit.url(&k.id)), escape(t.revisit_link));
    }
    out
}

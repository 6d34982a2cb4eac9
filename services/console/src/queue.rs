//! The queue page: everything waiting for this desk (or, for a unit, what
//! it has in hand), filtered, sorted by deadline, counted per group, and
//! live: the page listens on `/queue/events` (server-sent events, woken by
//! the desk's `Watch` and checked every two seconds) and reloads its rows
//! from `/queue/live` when what waits has changed.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame, instant, local_ts, time_left};
use crate::session::Session;
use crate::web::{AppState, lang, signed_desk};

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    category: String,
    #[serde(default)]
    urgency: String,
    #[serde(default)]
    overdue: String,
    #[serde(default)]
    group: String,
}

impl Filters {
    fn keeps(&self, e: &pb::QueueEntry) -> bool {
        let Some(t) = &e.ticket else { return false };
        (self.category.is_empty() || t.category == self.category)
            && (self.urgency.is_empty() || t.urgency == self.urgency)
            && (self.overdue.is_empty() || t.overdue_level.to_string() == self.overdue)
            && (self.group.is_empty() || e.group == self.group)
    }

    fn query(&self) -> String {
        let pairs = [("category", &self.category), ("urgency", &self.urgency), ("overdue", &self.overdue), ("group", &self.group)];
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", pages::encode(v))).collect::<Vec<_>>().join("&")
    }
}

/// The desk's queue (`open`: every open ticket it holds, as the map
/// shows them), with the caller's token.
pub(crate) async fn load(app: &App, s: &Session, open: bool) -> Result<Vec<pb::QueueEntry>, tonic::Status> {
    let mut desk = app.backends.desk(&s.platform, &s.token).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(desk.queue(pb::QueueRequest { limit: 0, open }).await?.into_inner().entries)
}

fn title(app: &App, lang: Lang, s: &Session) -> String {
    if s.is_unit() {
        app.texts.args(lang, "queue-unit-title", &[("unit", pages::who(app, lang, s))])
    } else {
        app.texts.args(lang, "queue-title", &[("platform", pages::who(app, lang, s))])
    }
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let entries = match load(&app, &s, false).await {
        Ok(e) => e,
        Err(status) => return pages::status_page(&app, lang, &s, &status),
    };
    let t = |id: &str| app.texts.t(lang, id);
    let title = title(&app, lang, &s);
    let query = f.query();
    let body = html! {
        h1 { (title) " " span.live-badge #live-state aria-hidden="true" { (t("queue-live")) } }
        (filter_form(&app, lang, &f))
        section #live data-src=(format!("/queue/live?{query}")) aria-live="polite" { (live_section(&app, lang, &entries, &f)) }
    };
    let path = if query.is_empty() { "/queue".to_owned() } else { format!("/queue?{query}") };
    frame(&app, lang, Some(&s), &title, &path, body).into_response()
}

/// The part of the page that changes: counts and rows.
pub(crate) async fn live(State(app): AppState, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match load(&app, &s, false).await {
        Ok(entries) => Html(live_section(&app, lang, &entries, &f).into_string()).into_response(),
        Err(status) => pages::status_page(&app, lang, &s, &status),
    }
}

fn select(app: &App, lang: Lang, name: &str, label_id: &str, current: &str, options: &[(String, String)]) -> Markup {
    html! {
        div.field {
            label for=(format!("f-{name}")) { (app.texts.t(lang, label_id)) }
            select id=(format!("f-{name}")) name=(name) {
                option value="" selected[current.is_empty()] { (app.texts.t(lang, "filter-any")) }
                @for (v, label) in options { option value=(v) selected[current == v] { (label) } }
            }
        }
    }
}

fn filter_form(app: &App, lang: Lang, f: &Filters) -> Markup {
    let categories: Vec<(String, String)> =
        whistle_domain::Category::ALL.iter().map(|c| (c.as_str().to_owned(), app.texts.code(lang, "category", c.as_str()))).collect();
    let urgencies: Vec<(String, String)> =
        ["urgent", "important", "ordinary", "consultation"].iter().map(|u| (u.to_string(), app.texts.code(lang, "urgency", u))).collect();
    let overdue: Vec<(String, String)> = (0..=2).map(|l| (l.to_string(), app.texts.t(lang, &format!("overdue-{l}")))).collect();
    let groups: Vec<(String, String)> =
        whistle_domain::queue::QueueGroup::ALL.iter().map(|g| (g.as_str().to_owned(), app.texts.code(lang, "group", g.as_str()))).collect();
    html! {
        form.filters method="get" action="/queue" role="search" {
            (select(app, lang, "category", "filter-category", &f.category, &categories))
            (select(app, lang, "urgency", "filter-urgency", &f.urgency, &urgencies))
            (select(app, lang, "overdue", "filter-overdue", &f.overdue, &overdue))
            (select(app, lang, "group", "filter-group", &f.group, &groups))
            button type="submit" { (app.texts.t(lang, "filter-apply")) }
            a href="/queue" { (app.texts.t(lang, "filter-clear")) }
        }
    }
}

fn live_section(app: &App, lang: Lang, entries: &[pb::QueueEntry], f: &Filters) -> Markup {
    let t = |id: &str| app.texts.t(lang, id);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        *counts.entry(e.group.as_str()).or_default() += 1;
    }
    let shown: Vec<&pb::QueueEntry> = entries.iter().filter(|e| f.keeps(e)).collect();
    html! {
        ul.counts aria-label=(t("filter-group")) {
            li { (app.texts.args(lang, "queue-count", &[("count", entries.len().to_string())])) }
            @for (group, n) in &counts {
                li { a.chip data-group=(group) href=(format!("/queue?group={group}")) { (app.texts.code(lang, "group", group)) " " strong { (n) } } }
            }
        }
        @if shown.is_empty() {
            p.empty #queue-empty { (t("queue-empty")) }
        } @else {
            table #queue {
                thead { tr {
                    th scope="col" { (t("col-number")) }
                    th scope="col" { (t("col-group")) }
                    th scope="col" { (t("col-category")) }
                    th scope="col" { (t("col-urgency")) }
                    th scope="col" { (t("col-place")) }
                    th scope="col" { (t("col-deadline")) }
                    th scope="col" { (t("col-left")) }
                    th scope="col" { (t("col-text")) }
                } }
                tbody {
                    @for e in shown {
                        @if let Some(v) = &e.ticket { (row(app, lang, e, v)) }
                    }
                }
            }
        }
    }
}

fn row(app: &App, lang: Lang, e: &pb::QueueEntry, v: &pb::TicketView) -> Markup {
    let (left, late) = time_left(app, lang, instant(&v.deadline));
    let class = match v.overdue_level {
        0 if late => "row late".to_owned(),
        0 => "row".to_owned(),
        n => format!("row overdue overdue-{n}"),
    };
    let text: String = v.text.chars().take(40).collect();
    html! {
        tr class=(class) data-ticket=(v.ticket_number) data-group=(e.group) {
            td { a href=(format!("/tickets/{}", v.ticket_number)) { (v.ticket_number) } }
            td { (app.texts.code(lang, "group", &e.group)) }
            td { (app.texts.code(lang, "category", &v.category)) }
            td.urgency data-urgency=(v.urgency) { (app.texts.code(lang, "urgency", &v.urgency)) }
            td { (pages::place(app, &v.jurisdiction)) }
            td { (local_ts(app, &v.deadline)) }
            td.left { (left) @if v.overdue_level > 0 { " " span.badge { (app.texts.t(lang, &format!("overdue-{}", v.overdue_level.min(2)))) } } }
            td.text { (text) }
        }
    }
}

/// What a desk's queue looks like, to tell when it changed.
fn digest(entries: &[pb::QueueEntry]) -> String {
    entries
        .iter()
        .filter_map(|e| e.ticket.as_ref().map(|t| format!("{}:{}:{}:{}", t.ticket_number, e.group, t.overdue_level, t.state)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Server-sent events: `change` each time what waits on the desk changes.
pub(crate) async fn events(State(app): AppState, headers: HeaderMap) -> Response {
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut desk = match app.backends.desk(&s.platform, &s.token) {
        Ok(d) => d,
        Err(e) => return pages::failure(&app, lang(&headers), axum::http::StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // A unit has no desk queue to watch; its list is checked on the tick alone.
    let watch = if s.is_unit() { None } else { desk.watch(pb::WatchRequest {}).await.ok().map(|r| r.into_inner()) };
    let last = load(&app, &s, false).await.map(|e| digest(&e)).unwrap_or_default();
    let shutdown = app.shutdown.clone();
    // Checked on every wake-up: signing out (or the session expiring) ends the stream.
    let sid = crate::session::cookie(&headers, crate::session::SESSION_COOKIE).unwrap_or_default();
    let state = (app, s, watch, last, sid);
    let stream = futures::stream::unfold(state, |(app, s, mut watch, mut last, sid)| async move {
        loop {
            let stop = {
                let woken = async {
                    match watch.as_mut() {
                        Some(w) => match w.message().await {
                            Ok(Some(_)) => {}
                            // The desk went away: fall back to the tick.
                            Ok(None) | Err(_) => std::future::pending::<()>().await,
                        },
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = woken => false,
                    () = tokio::time::sleep(Duration::from_secs(2)) => false,
                    () = app.shutdown.wait() => true,
                }
            };
            if stop || matches!(app.sessions.get(&sid).await, Ok(None)) {
                return None;
            }
            match load(&app, &s, false).await {
                Ok(entries) => {
                    let now = digest(&entries);
                    if now != last {
                        last = now;
                        let event = Event::default().event("change").data(entries.len().to_string());
                        return Some((Ok::<_, std::convert::Infallible>(event), (app, s, watch, last, sid)));
                    }
                }
                Err(status) if status.code() == tonic::Code::Unauthenticated => return None,
                Err(_) => {}
            }
        }
    });
    let stream = futures::StreamExt::take_until(stream, async move { shutdown.wait().await });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

//! Hot issues: the problems reported most in a period (category × place ×
//! key terms) among the tickets this desk may read, with their trend
//! against the period before; each opens the list of its tickets. The
//! cities run their special campaigns from this list.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame, local_ts};
use crate::web::{AppState, lang, signed_desk};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ask {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    category: String,
    #[serde(default)]
    place: String,
}

/// The asked period, else the last 30 days up to tomorrow, city time.
fn period(app: &App, a: &Ask) -> (String, String) {
    pages::period(app, &a.from, &a.to, |today| today.next_day().unwrap_or(today) - time::Duration::days(30))
}

fn place_name(app: &App, code: &str) -> String {
    if code.is_empty() { "—".to_owned() } else { app.city.place_name(code).unwrap_or_else(|| code.to_owned()) }
}

fn trend(app: &App, lang: Lang, h: &pb::HotIssue) -> Markup {
    let diff = h.count as i64 - h.previous as i64;
    let (class, id) = match diff {
        d if d > 0 => ("up", "hot-up"),
        d if d < 0 => ("down", "hot-down"),
        _ => ("same", "hot-same"),
    };
    html! { span class=(format!("trend {class}")) { (app.texts.args(lang, id, &[("diff", diff.abs().to_string()), ("previous", h.previous.to_string())])) } }
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap, Query(a): Query<Ask>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (from, to) = period(&app, &a);
    let one = !a.category.is_empty() && !a.place.is_empty();
    let req = pb::HotIssuesRequest {
        from: from.clone(),
        to: to.clone(),
        limit: if one { 1 } else { 20 },
        category: a.category.clone(),
        place: a.place.clone(),
    };
    let got = match app.backends.desk(&s.platform, &s.token) {
        Ok(mut desk) => desk.hot_issues(req).await.map(|r| r.into_inner()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    let t = |id: &str| app.texts.t(lang, id);
    let (hot, refused) = match got {
        Ok(h) => (Some(h), None),
        Err(st) if st.code() == tonic::Code::InvalidArgument => (None, Some(st.message().to_owned())),
        Err(st) => return pages::status_page(&app, lang, &s, &st),
    };
    let period_q = format!("from={}&to={}", pages::encode(&from), pages::encode(&to));
    let title = t("hot-title");
    let body = html! {
        h1 { (title) }
        form.filters method="get" action="/hot" {
            div.field { label for="from" { (t("figures-from")) } input #from type="date" name="from" value=(from) required; }
            div.field { label for="to" { (t("figures-to")) } input #to type="date" name="to" value=(to) required; }
            button type="submit" { (t("figures-show")) }
        }
        @if let Some(why) = refused { div.refused role="alert" { p.rule { (why) } } }
        @if let Some(h) = &hot {
            p.help { (app.texts.args(lang, "hot-scanned", &[("count", h.scanned.to_string())])) @if h.truncated { " " (t("hot-truncated")) } }
            @if one {
                @for issue in &h.issues { (issue_tickets(&app, lang, issue, &period_q)) }
                @if h.issues.is_empty() { p.empty { (t("hot-empty")) } }
            } @else if h.issues.is_empty() {
                p.empty { (t("hot-empty")) }
            } @else {
                table #hot {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { (t("col-category")) }
                        th scope="col" { (t("col-place")) }
                        th scope="col" { (t("hot-terms")) }
                        th scope="col" { (t("hot-count")) }
                        th scope="col" { (t("hot-trend")) }
                    } }
                    tbody { @for (i, issue) in h.issues.iter().enumerate() {
                        tr data-category=(issue.category) data-place=(issue.place) data-count=(issue.count) {
                            td { (i + 1) }
                            td {
                                // Only a placed issue opens its list (an empty place asks for every place).
                                @if issue.place.is_empty() { (app.texts.code(lang, "category", &issue.category)) }
                                @else { a href=(format!("/hot?{period_q}&category={}&place={}", pages::encode(&issue.category), pages::encode(&issue.place))) { (app.texts.code(lang, "category", &issue.category)) } }
                            }
                            td { (place_name(&app, &issue.place)) }
                            td.terms { @for term in &issue.terms { span.term { (term) } " " } }
                            td.count { strong { (issue.count) } }
                            td { (trend(&app, lang, issue)) }
                        }
                    } }
                }
            }
        }
    };
    frame(&app, lang, Some(&s), &title, &format!("/hot?{period_q}"), body).into_response()
}

fn issue_tickets(app: &App, lang: Lang, issue: &pb::HotIssue, period_q: &str) -> Markup {
    let t = |id: &str| app.texts.t(lang, id);
    html! {
        h2 #issue { (app.texts.code(lang, "category", &issue.category)) " · " (place_name(app, &issue.place)) " · " (issue.count) " " (trend(app, lang, issue)) }
        p { @for term in &issue.terms { span.term { (term) } " " } }
        p { a href=(format!("/hot?{period_q}")) { (t("hot-back")) } }
        table #hot-tickets {
            thead { tr {
                th scope="col" { (t("col-number")) }
                th scope="col" { (t("ticket-received")) }
                th scope="col" { (t("ticket-state")) }
                th scope="col" { (t("col-text")) }
            } }
            tbody { @for v in &issue.tickets {
                tr data-ticket=(v.ticket_number) {
                    td { a href=(format!("/tickets/{}", v.ticket_number)) { (v.ticket_number) } }
                    td { (local_ts(app, &v.received_at)) }
                    td { (app.texts.code(lang, "state", &v.state)) }
                    td.text { (v.text.chars().take(60).collect::<String>()) }
                }
            } }
        }
    }
}

//! The ticket page: what the caller may see of one ticket (the phone masked
//! as notifications mask it), its deadline and time left, the trail as a
//! timeline with actors, and a form for each action the desk says the
//! caller can take now. An action posts back here; a refusal shows the rule
//! that refused it, in the desk's own words.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::HashMap;
use whistle_domain::PlatformId;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame, instant, local_ts, time_left};
use crate::session::Session;
use crate::web::{AppState, csrf_refusal, lang, signed_desk};

#[derive(Deserialize)]
pub(crate) struct Shown {
    done: Option<String>,
}

/// What to say above the ticket.
enum Notice {
    Done(String),
    Refused(String),
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap, Path(number): Path<String>, Query(q): Query<Shown>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let notice = q.done.filter(|a| known_action(a)).map(Notice::Done);
    render(&app, lang, &s, &number, notice, StatusCode::OK).await
}

async fn render(app: &App, lang: Lang, s: &Session, number: &str, notice: Option<Notice>, status: StatusCode) -> Response {
    let got = match app.backends.desk(&s.platform, &s.token) {
        Ok(mut desk) => desk.get(pb::TicketRef { ticket: number.to_owned() }).await.map(|r| r.into_inner()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    let d = match got {
        Ok(d) => d,
        Err(st) => return pages::status_page(app, lang, s, &st),
    };
    let Some(v) = &d.ticket else { return pages::failure(app, lang, StatusCode::BAD_GATEWAY, "the desk answered without the ticket") };
    let t = |id: &str| app.texts.t(lang, id);
    let title = app.texts.args(lang, "ticket-title", &[("number", v.ticket_number.clone())]);
    let (left, late) = time_left(app, lang, instant(&v.deadline));
    let body = html! {
        h1 { (title) }
        @match &notice {
            Some(Notice::Done(a)) => p.done role="status" { (app.texts.args(lang, "action-done", &[("action", t(&format!("action-{a}")))])) },
            Some(Notice::Refused(why)) => div.refused role="alert" { strong { (t("action-refused")) } p.rule { (why) } },
            None => {},
        }
        div.ticket {
            section.facts aria-labelledby="facts-h" {
                h2 #facts-h .sr-only { (title) }
                dl {
                    dt { (t("ticket-state")) } dd #state data-state=(v.state) { (app.texts.code(lang, "state", &v.state)) }
                    @if !d.group.is_empty() { dt { (t("ticket-waiting")) } dd #group data-group=(d.group) { (app.texts.code(lang, "group", &d.group)) @if !d.queue_reason.is_empty() { " — " (d.queue_reason) } } }
                    dt { (t("ticket-text")) } dd.text { (v.text) }
                    dt { (t("ticket-address")) } dd { (d.address) }
                    dt { (t("ticket-phone")) } dd #phone { (d.phone_masked) }
                    dt { (t("ticket-received")) } dd { (local_ts(app, &v.received_at)) " · " (v.channel) }
                    dt { (t("ticket-category")) } dd #category { (app.texts.code(lang, "category", &v.category)) }
                    dt { (t("ticket-urgency")) } dd { (app.texts.code(lang, "urgency", &v.urgency)) }
                    dt { (t("ticket-whistle")) } dd { (app.texts.code(lang, "whistle", &v.whistle_level)) }
                    dt { (t("ticket-place")) } dd { (pages::place(app, &v.jurisdiction)) }
                    @if !v.platform.is_empty() { dt { (t("ticket-platform")) } dd #platform data-platform=(v.platform) { (pages::platform_name(app, lang, &v.platform)) } }
                    @if !v.unit.is_empty() { dt { (t("ticket-unit")) } dd #unit data-unit=(v.unit) { (pages::unit_name(app, &v.unit)) } }
                    @if v.deadline.is_some() {
                        dt { (t("ticket-deadline")) }
                        dd class=(if late || v.overdue_level > 0 { "late" } else { "" }) { (local_ts(app, &v.deadline)) " · " (left) }
                    }
                    @if v.overdue_level > 0 { dt { (t("ticket-overdue")) } dd.late { (t(&format!("overdue-{}", v.overdue_level.min(2)))) } }
                    @if v.supervised { dt { (t("ticket-supervised")) } dd { (t("yes")) } }
                    @if d.extension_requested { dt { (t("ticket-extension")) } dd.late { (t("ticket-extension-pending")) } }
                    @if !v.result.is_empty() { dt { (t("ticket-result")) } dd #result { (v.result) } }
                    @if v.rework_count > 0 { dt { (t("ticket-rework")) } dd { (v.rework_count) } }
                }
            }
            section.actions aria-labelledby="actions-h" {
                h2 #actions-h { (t("actions-title")) }
                @if d.actions.is_empty() { p { (t("actions-none")) } }
                @for a in &d.actions { (form(app, lang, s, v, a)) }
            }
        }
        section.trail aria-labelledby="trail-h" {
            h2 #trail-h { (t("trail-title")) }
            ol.timeline {
                @for h in &d.history {
                    li class=(if h.refused.is_empty() { "" } else { "refused" }) data-event=(h.event) {
                        time { (local_ts(app, &h.at)) }
                        " " strong { (app.texts.code(lang, "event", &h.event)) }
                        " " span.actor { (actor(app, lang, h)) }
                        @if !h.refused.is_empty() { " " span.rule { (app.texts.args(lang, "trail-refused", &[("rule", h.refused.clone())])) } }
                    }
                }
            }
        }
    };
    (status, frame(app, lang, Some(s), &title, &format!("/tickets/{number}"), body)).into_response()
}

fn actor(app: &App, lang: Lang, h: &pb::HistoryEntry) -> String {
    match h.actor_kind.as_str() {
        "unit" => pages::unit_name(app, &h.actor_id),
        "operator" => h.actor_id.strip_prefix("desk:").map_or_else(|| h.actor_id.clone(), |p| pages::platform_name(app, lang, p)),
        _ => format!("{}:{}", h.actor_kind, h.actor_id),
    }
}

const ACTIONS: [&str; 11] = [
    "dispatch",
    "delegate",
    "reclassify",
    "whistle",
    "supervise",
    "decide_extension",
    "acknowledge",
    "return",
    "request_extension",
    "complete",
    "report_in",
];

fn known_action(a: &str) -> bool {
    ACTIONS.contains(&a)
}

fn text_field(app: &App, lang: Lang, action: &str, name: &str, label_id: &str) -> Markup {
    let id = format!("{action}-{name}");
    html! {
        label for=(id) { (app.texts.t(lang, label_id)) }
        textarea id=(id) name=(name) rows="2" maxlength="2000" required {}
    }
}

fn form(app: &App, lang: Lang, s: &Session, v: &pb::TicketView, action: &str) -> Markup {
    let t = |id: &str| app.texts.t(lang, id);
    let platform = PlatformId::parse(&s.platform).ok();
    let fields = match action {
        "dispatch" => {
            let category = whistle_domain::Category::parse(&v.category).ok();
            let suggested = platform.as_ref().zip(category).and_then(|(p, c)| app.city.unit_for(p, c));
            let units: Vec<_> = platform.as_ref().map(|p| app.city.units_of(p).collect()).unwrap_or_default();
            html! {
                label for="dispatch-unit" { (t("field-unit")) }
                select #dispatch-unit name="unit" required {
                    @for u in units { option value=(u.code) selected[suggested.as_ref() == Some(&u.code)] { (u.name) " (" (u.code) ")" } }
                }
            }
        }
        "delegate" => {
            let below = platform.as_ref().map(|p| app.city.children(p)).unwrap_or_default();
            html! {
                label for="delegate-platform" { (t("field-platform")) }
                select #delegate-platform name="platform" required {
                    @for p in below { option value=(p.to_string()) { (pages::platform_name(app, lang, &p.to_string())) } }
                }
                (text_field(app, lang, action, "reason", "field-reason"))
            }
        }
        "reclassify" => {
            let options = |family: &str, codes: Vec<&str>, current: &str| {
                html! { @for c in codes { option value=(c) selected[c == current] { (app.texts.code(lang, family, c)) } } }
            };
            html! {
                label for="reclassify-category" { (t("ticket-category")) }
                select #reclassify-category name="category" { (options("category", whistle_domain::Category::ALL.iter().map(|c| c.as_str()).collect(), &v.category)) }
                label for="reclassify-urgency" { (t("ticket-urgency")) }
                select #reclassify-urgency name="urgency" { (options("urgency", vec!["urgent", "important", "ordinary", "consultation"], &v.urgency)) }
                label for="reclassify-whistle" { (t("ticket-whistle")) }
                select #reclassify-whistle name="whistle_level" { (options("whistle", vec!["ordinary", "key", "difficult"], &v.whistle_level)) }
                label for="reclassify-street" { (t("field-street")) }
                // Left as it is, the place (down to its community) stays.
                select #reclassify-street name="street" {
                    option value="" selected { (t("field-keep")) " (" (pages::place(app, &v.jurisdiction)) ")" }
                    @for st in &app.city.config.streets {
                        option value=(st.code) { (app.city.place_name(&st.code).unwrap_or_else(|| st.code.clone())) }
                    }
                }
                (text_field(app, lang, action, "reason", "field-reason"))
            }
        }
        "whistle" | "supervise" | "return" => text_field(app, lang, action, "reason", "field-reason"),
        "complete" => text_field(app, lang, action, "result", "field-result"),
        "request_extension" => html! {
            label for="request_extension-due" { (t("field-requested-due")) }
            input #request_extension-due type="datetime-local" name="due" required;
            (text_field(app, lang, action, "reason", "field-reason"))
        },
        "decide_extension" => html! {
            fieldset {
                legend { (t("field-grant")) }
                label { input type="radio" name="grant" value="yes" required; " " (t("grant-yes")) }
                label { input type="radio" name="grant" value="no"; " " (t("grant-no")) }
            }
            label for="decide_extension-due" { (t("field-due")) }
            input #decide_extension-due type="datetime-local" name="due";
            label for="decide_extension-note" { (t("field-note")) }
            textarea #decide_extension-note name="note" rows="2" maxlength="2000" {}
        },
        _ => html! {},
    };
    html! {
        form.action method="post" action=(format!("/tickets/{}/{action}", v.ticket_number)) data-action=(action) {
            h3 { (t(&format!("action-{action}"))) }
            input type="hidden" name="csrf" value=(s.csrf);
            (fields)
            button type="submit" { (t(&format!("action-{action}"))) }
        }
    }
}

/// `2026-11-30T18:00` (a `datetime-local` field) or `2026-11-30` (the end
/// of that working day, 18:00), in city time.
fn parse_due(app: &App, s: &str) -> Result<whistle_proto::prost_types::Timestamp, String> {
    let s = s.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let local = time::PrimitiveDateTime::parse(s, fmt)
        .or_else(|_| time::Date::parse(s, day).map(|d| d.with_time(time::macros::time!(18:00))))
        .map_err(|_| format!("the date {s:?} is not a date and time like 2026-11-30T18:00"))?;
    Ok(whistle_proto::timestamp(local.assume_offset(app.offset)))
}

pub(crate) async fn act(
    State(app): AppState,
    headers: HeaderMap,
    Path((number, action)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&app, lang, &s, f.get("csrf")) {
        return r;
    }
    if !known_action(&action) {
        return pages::message(&app, lang, Some(&s), StatusCode::NOT_FOUND, "notfound-title", &format!("no action {action:?}"));
    }
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut desk = match app.backends.desk(&s.platform, &s.token) {
        Ok(d) => d,
        Err(e) => return pages::failure(&app, lang, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let ticket = number.clone();
    let reason = || pb::ReasonRequest { ticket: ticket.clone(), reason: field("reason") };
    let due = |k: &str| -> Result<Option<whistle_proto::prost_types::Timestamp>, String> {
        let v = field(k);
        if v.trim().is_empty() { Ok(None) } else { parse_due(&app, &v).map(Some) }
    };
    let done = match action.as_str() {
        "dispatch" => desk.dispatch(pb::DispatchRequest { ticket: ticket.clone(), unit: field("unit") }).await,
        "delegate" => {
            desk.delegate(pb::DelegateRequest { ticket: ticket.clone(), platform: field("platform"), reason: field("reason") }).await
        }
        "reclassify" => {
            let req = pb::ReclassifyRequest {
                ticket: ticket.clone(),
                category: field("category"),
                urgency: field("urgency"),
                whistle_level: field("whistle_level"),
                county: field("county"),
                street: field("street"),
                community: field("community"),
                reason: field("reason"),
            };
            desk.reclassify(req).await
        }
        "whistle" => desk.whistle(reason()).await,
        "supervise" => desk.supervise(reason()).await,
        "return" => desk.r#return(reason()).await,
        "acknowledge" => desk.acknowledge(pb::TicketRef { ticket: ticket.clone() }).await,
        "report_in" => desk.report_in(pb::TicketRef { ticket: ticket.clone() }).await,
        "complete" => desk.complete(pb::CompleteRequest { ticket: ticket.clone(), unit: String::new(), result: field("result") }).await,
        "request_extension" => match due("due") {
            Ok(requested_due_at) => {
                desk.request_extension(pb::ExtensionRequest { ticket: ticket.clone(), reason: field("reason"), requested_due_at }).await
            }
            Err(e) => Err(tonic::Status::invalid_argument(e)),
        },
        "decide_extension" => match due("due") {
            Ok(due_at) => {
                let grant = field("grant") == "yes";
                desk.decide_extension(pb::ExtensionDecision { ticket: ticket.clone(), grant, due_at, note: field("note") }).await
            }
            Err(e) => Err(tonic::Status::invalid_argument(e)),
        },
        _ => unreachable!("checked by known_action"),
    };
    match done {
        Ok(_) => {
            tracing::info!(caller = %s.caller(), action = %action, "console action");
            Redirect::to(&format!("/tickets/{}?done={action}", pages::encode(&number))).into_response()
        }
        Err(st) => match st.code() {
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied => {
                let code =
                    if st.code() == tonic::Code::PermissionDenied { StatusCode::FORBIDDEN } else { StatusCode::UNPROCESSABLE_ENTITY };
                render(&app, lang, &s, &number, Some(Notice::Refused(st.message().to_owned())), code).await
            }
            _ => pages::status_page(&app, lang, &s, &st),
        },
    }
}

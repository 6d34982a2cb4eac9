//! The intake desk of the hotline's phone agents: a form to register a
//! call (text, address with suggestions from the city's gazetteer, phone,
//! language). As the agent types it shows what the classifier would choose
//! (category, urgency, where it goes and to which unit, with its
//! confidence); it submits through intake and tells the number only once
//! intake has it durably (intake answers only then). Each form carries its
//! own id as the call's external id, so a second click or a retry after a
//! timeout registers the call once.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::HashMap;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame};
use crate::session::{self, Session};
use crate::web::{AppState, csrf_refusal, lang, signed};

/// Who works the intake desk: the hotline's agents and the platform desks.
fn may_register(s: &Session) -> bool {
    !s.is_unit()
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Call {
    #[serde(default)]
    text: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: String,
}

const LANGUAGES: [&str; 5] = ["zh", "en", "ja", "ko", "ru"];

/// The form; `call_id` is the call's id when the form is shown again for
/// the same call (after a refusal or a failure), so a retry registers it once.
fn form(app: &App, lang: Lang, s: &Session, call: &Call, call_id: Option<&str>, error: Option<&str>) -> Markup {
    let t = |id: &str| app.texts.t(lang, id);
    html! {
        h1 { (t("intake-title")) }
        @if let Some(e) = error { div.refused role="alert" { strong { (t("intake-refused")) } p.rule { (e) } } }
        div.ticket {
            form #intake method="post" action="/intake" data-preview="/intake/preview" data-places="/intake/places" {
                input type="hidden" name="csrf" value=(s.csrf);
                // The call's external id: new for each new call, kept when it is tried again.
                input type="hidden" name="call_id" value=(call_id.map_or_else(session::random_token, str::to_owned));
                label for="call-text" { (t("ticket-text")) }
                textarea #call-text name="text" rows="5" maxlength="4000" required { (call.text) }
                label for="call-address" { (t("ticket-address")) }
                input #call-address type="text" name="address" value=(call.address) list="places" autocomplete="off";
                datalist #places {}
                label for="call-phone" { (t("ticket-phone")) }
                input #call-phone type="tel" name="phone" value=(call.phone) autocomplete="off";
                label for="call-name" { (t("intake-name")) }
                input #call-name type="text" name="name" value=(call.name) autocomplete="off";
                label for="call-language" { (t("intake-language")) }
                select #call-language name="language" {
                    @for l in LANGUAGES { option value=(l) selected[call.language == l || (call.language.is_empty() && l == "zh")] { (t(&format!("language-{l}"))) } }
                }
                button type="submit" { (t("intake-submit")) }
            }
            section.preview aria-labelledby="preview-h" {
                h2 #preview-h { (t("intake-preview")) }
                div #preview aria-live="polite" { p.help { (t("intake-preview-help")) } }
            }
        }
    }
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    let s = match signed(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !may_register(&s) {
        return pages::message(&app, lang, Some(&s), StatusCode::FORBIDDEN, "denied-title", &app.texts.t(lang, "intake-units"));
    }
    let title = app.texts.t(lang, "intake-title");
    frame(&app, lang, Some(&s), &title, "/intake", form(&app, lang, &s, &Call::default(), None, None)).into_response()
}

/// What the classifier would make of the call so far, as a fragment.
pub(crate) async fn preview(State(app): AppState, headers: HeaderMap, Query(call): Query<Call>) -> Response {
    let lang = lang(&headers);
    let s = match signed(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !may_register(&s) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let t = |id: &str| app.texts.t(lang, id);
    if call.text.trim().chars().count() < 2 {
        return Html(html! { p.help { (t("intake-preview-help")) } }.into_string()).into_response();
    }
    let req = pb::PreviewRequest { text: call.text.clone(), address: call.address.clone(), lat: None, lon: None, language: String::new() };
    let got = app.backends.classifier().preview(req).await;
    let body = match got {
        Ok(r) => {
            let p = r.into_inner();
            let place = pages::place(&app, &p.jurisdiction);
            let unit = if p.unit.is_empty() { "—".to_owned() } else { pages::unit_name(&app, &p.unit) };
            html! {
                dl.facts #preview-facts data-category=(p.category) data-urgency=(p.urgency) data-unit=(p.unit) data-platform=(p.platform) {
                    dt { (t("ticket-category")) } dd #preview-category { (app.texts.code(lang, "category", &p.category)) " " span.confidence { (format!("{:.0}%", p.confidence * 100.0)) } }
                    dt { (t("ticket-urgency")) } dd #preview-urgency class=(if p.urgency == "urgent" { "late" } else { "" }) { (app.texts.code(lang, "urgency", &p.urgency)) }
                    dt { (t("ticket-place")) } dd { @if place.is_empty() { "—" } @else { (place) } }
                    dt { (t("ticket-platform")) } dd { (pages::platform_name(&app, lang, &p.platform)) }
                    dt { (t("ticket-unit")) } dd #preview-unit { (unit) }
                    @let close: Vec<&pb::Alternative> = p.runners_up.iter().filter(|a| a.probability >= 0.05).take(2).collect();
                    @if !close.is_empty() {
                        dt { (t("intake-runners-up")) }
                        dd { @for a in close { (app.texts.code(lang, "category", &a.category)) " " (format!("{:.0}%", a.probability * 100.0)) " " } }
                    }
                }
                @if p.triage { p.refused { (t("intake-triage")) } }
            }
        }
        Err(st) if st.code() == tonic::Code::InvalidArgument => html! { p.rule { (st.message()) } },
        Err(st) => html! { p.rule { (app.texts.args(lang, "error-backend", &[("detail", st.message().to_owned())])) } },
    };
    Html(body.into_string()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Place {
    #[serde(default)]
    q: String,
}

/// Up to ten places of the city whose names contain what was typed, as
/// `<option>`s for the address field's list.
pub(crate) async fn places(State(app): AppState, headers: HeaderMap, Query(q): Query<Place>) -> Response {
    if signed(&app, &headers).await.is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let needle = q.q.trim().to_lowercase();
    let c = &app.city.config;
    let mut found: Vec<String> = Vec::new();
    if !needle.is_empty() {
        let codes = c
            .counties
            .iter()
            .map(|k| (&k.code, &k.name, &k.aliases))
            .chain(c.streets.iter().map(|s| (&s.code, &s.name, &s.aliases)))
            .chain(c.communities.iter().map(|m| (&m.code, &m.name, &m.aliases)));
        for (code, name, aliases) in codes {
            if std::iter::once(name).chain(aliases.iter()).any(|n| n.to_lowercase().contains(&needle))
                && let Some(full) = app.city.place_name(code)
                && !found.contains(&full)
            {
                found.push(full);
            }
            if found.len() == 10 {
                break;
            }
        }
    }
    Html(html! { @for f in &found { option value=(f) {} } }.into_string()).into_response()
}

pub(crate) async fn submit(State(app): AppState, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let lang = lang(&headers);
    let s = match signed(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&app, lang, &s, f.get("csrf")) {
        return r;
    }
    if !may_register(&s) {
        return pages::message(&app, lang, Some(&s), StatusCode::FORBIDDEN, "denied-title", &app.texts.t(lang, "intake-units"));
    }
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let call =
        Call { text: field("text"), address: field("address"), phone: field("phone"), name: field("name"), language: field("language") };
    let call_id: String = field("call_id").chars().filter(char::is_ascii_hexdigit).take(64).collect();
    let req = pb::SubmitRequestRequest {
        channel: "phone".into(),
        // The form's own id: submitting it twice registers one call.
        external_id: if call_id.is_empty() { String::new() } else { format!("console-{call_id}") },
        text: call.text.clone(),
        address: call.address.clone(),
        lat: None,
        lon: None,
        citizen_name: call.name.clone(),
        citizen_phone: call.phone.clone(),
        citizen_email: String::new(),
        language: call.language.clone(),
    };
    let title = app.texts.t(lang, "intake-title");
    match app.backends.intake().submit_request(req).await {
        Ok(r) => {
            let r = r.into_inner();
            tracing::info!(caller = %s.caller(), ticket = %r.ticket_id, "call registered at the console");
            let t = |id: &str| app.texts.t(lang, id);
            let body = html! {
                h1 { (title) }
                div.done role="status" {
                    p { (app.texts.args(lang, "intake-registered", &[("number", r.ticket_number.clone())])) }
                    p { (t("intake-number")) " " strong #ticket-number { (r.ticket_number) } }
                    @if r.duplicate { p { (t("intake-duplicate")) } }
                }
                p { a href="/intake" { (t("intake-next")) } }
            };
            frame(&app, lang, Some(&s), &title, "/intake", body).into_response()
        }
        // Refused or not reached: the same call again, with the same id, so
        // trying again registers it once.
        Err(st) => {
            let (code, why) = if st.code() == tonic::Code::InvalidArgument {
                (StatusCode::UNPROCESSABLE_ENTITY, st.message().to_owned())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, app.texts.args(lang, "error-backend", &[("detail", st.message().to_owned())]))
            };
            let id = (!call_id.is_empty()).then_some(call_id.as_str());
            (code, frame(&app, lang, Some(&s), &title, "/intake", form(&app, lang, &s, &call, id, Some(&why)))).into_response()
        }
    }
}

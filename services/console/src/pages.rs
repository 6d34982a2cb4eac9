//! The page frame (header, navigation, language switch, sign-out) and the
//! small pages: sign-in, refusals, failures; and how times read.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use whistle_proto::prost_types::Timestamp;

use crate::App;
use crate::i18n::Lang;
use crate::session::Session;

/// The whole page: `path` is where the language switch comes back to.
pub(crate) fn frame(app: &App, lang: Lang, s: Option<&Session>, title: &str, path: &str, body: Markup) -> Html<String> {
    let t = |id: &str| app.texts.t(lang, id);
    let who = s.map(|s| who(app, lang, s));
    let back = format!("/lang/{}?back={}", lang.other().as_str(), encode(path));
    Html(
        html! {
            (DOCTYPE)
            html lang=(lang.html()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (t("app-name")) }
                    link rel="stylesheet" href="/static/console.css";
                    script src="/static/console.js" defer {}
                }
                body {
                    a.skip href="#main" { (t("nav-skip")) }
                    header.top {
                        span.brand { (t("app-name")) }
                        @if let Some(s) = s {
                            nav aria-label=(t("app-name")) {
                                @if !s.is_agent() {
                                    a href="/queue" { (t("nav-queue")) }
                                    a href="/map" { (t("nav-map")) }
                                    a href="/hot" { (t("nav-hot")) }
                                }
                                @if !s.is_unit() { a href="/intake" { (t("nav-intake")) } }
                                @if !s.is_unit() && !s.is_agent() { a href="/figures" { (t("nav-figures")) } }
                            }
                        }
                        span.spacer {}
                        @if let Some(w) = &who { span.who { (app.texts.args(lang, "signed-in-as", &[("who", w.clone())])) } }
                        a.lang href=(back) hreflang=(lang.other().html()) { (t("lang-switch")) }
                        @if let Some(s) = s {
                            form.inline method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (t("nav-signout")) }
                            }
                        }
                    }
                    main #main tabindex="-1" { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// How the header names the signed-in caller: the platform's or unit's name.
pub(crate) fn who(app: &App, lang: Lang, s: &Session) -> String {
    match s.kind.as_str() {
        "unit" => unit_name(app, &s.id),
        "agent" => app.texts.args(lang, "agent-name", &[("id", s.id.clone())]),
        _ => platform_name(app, lang, &s.id),
    }
}

pub(crate) fn unit_name(app: &App, code: &str) -> String {
    whistle_domain::UnitCode::parse(code).ok().and_then(|u| app.city.unit(&u).map(|u| u.name.clone())).unwrap_or_else(|| code.to_owned())
}

pub(crate) fn platform_name(app: &App, lang: Lang, platform: &str) -> String {
    match platform.split_once(':') {
        Some((_, code)) => app.city.place_name(code).unwrap_or_else(|| platform.to_owned()),
        None if platform == "city" => app.texts.t(lang, "scope-city"),
        None => platform.to_owned(),
    }
}

/// Percent-encodes a path for a query parameter.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn signin(app: &App, lang: Lang, csrf: &str, error: Option<&str>) -> Html<String> {
    let t = |id: &str| app.texts.t(lang, id);
    let body = html! {
        section.signin {
            h1 { (t("signin-title")) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { (t("signin-token")) }
                input #token type="password" name="token" autocomplete="current-password" required autofocus aria-describedby="token-help";
                p #token-help .help { (t("signin-help")) }
                button type="submit" { (t("signin-submit")) }
            }
        }
    };
    frame(app, lang, None, &t("signin-title"), "/signin", body)
}

pub(crate) fn message(app: &App, lang: Lang, s: Option<&Session>, status: StatusCode, title_id: &str, text: &str) -> Response {
    let title = app.texts.t(lang, title_id);
    let body =
        html! { section.notice { h1 { (title) } p role="alert" { (text) } p { a href="/queue" { (app.texts.t(lang, "nav-queue")) } } } };
    (status, frame(app, lang, s, &title, "/queue", body)).into_response()
}

pub(crate) fn failure(app: &App, lang: Lang, status: StatusCode, detail: &str) -> Response {
    message(app, lang, None, status, "error-title", &app.texts.args(lang, "error-backend", &[("detail", detail.to_owned())]))
}

pub(crate) fn csrf_refused(app: &App, lang: Lang, s: Option<&Session>) -> Response {
    message(app, lang, s, StatusCode::FORBIDDEN, "error-title", &app.texts.t(lang, "csrf-refused"))
}

/// A desk's refusal or failure as a page: not allowed, not found, or the
/// backend could not answer.
pub(crate) fn status_page(app: &App, lang: Lang, s: &Session, status: &tonic::Status) -> Response {
    match status.code() {
        tonic::Code::PermissionDenied => {
            message(app, lang, Some(s), StatusCode::FORBIDDEN, "denied-title", &app.texts.t(lang, "denied-text"))
        }
        tonic::Code::NotFound => message(app, lang, Some(s), StatusCode::NOT_FOUND, "notfound-title", &app.texts.t(lang, "notfound-text")),
        tonic::Code::Unauthenticated => axum::response::Redirect::to("/signin").into_response(),
        _ => {
            let detail = app.texts.args(lang, "error-backend", &[("detail", status.message().to_owned())]);
            message(app, lang, Some(s), StatusCode::SERVICE_UNAVAILABLE, "error-title", &detail)
        }
    }
}

pub(crate) fn instant(t: &Option<Timestamp>) -> Option<OffsetDateTime> {
    t.as_ref().and_then(|t| whistle_proto::to_datetime(t).ok())
}

/// A time as the city reads it: `2026-11-23 10:00`.
pub(crate) fn local(app: &App, t: OffsetDateTime) -> String {
    let t = t.to_offset(app.offset);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

pub(crate) fn local_ts(app: &App, t: &Option<Timestamp>) -> String {
    instant(t).map(|t| local(app, t)).unwrap_or_default()
}

fn span(app: &App, lang: Lang, d: time::Duration) -> String {
    let mins = d.whole_minutes().abs();
    let (days, hours, m) = (mins / (24 * 60), (mins / 60) % 24, mins % 60);
    if days > 0 {
        app.texts.args(lang, "span-days", &[("d", days.to_string()), ("h", hours.to_string())])
    } else if hours > 0 {
        app.texts.args(lang, "span-hours", &[("h", hours.to_string()), ("m", m.to_string())])
    } else {
        app.texts.args(lang, "span-minutes", &[("m", m.to_string())])
    }
}

/// "3d 4h left" or "2h 10m overdue", from now.
pub(crate) fn time_left(app: &App, lang: Lang, due: Option<OffsetDateTime>) -> (String, bool) {
    match due {
        None => (app.texts.t(lang, "left-none"), false),
        Some(due) => {
            let d = due - app.clock.now();
            if d.is_negative() {
                (app.texts.args(lang, "left-overdue", &[("span", span(app, lang, d))]), true)
            } else {
                (app.texts.args(lang, "left-remaining", &[("span", span(app, lang, d))]), false)
            }
        }
    }
}

/// A `[from, to)` period of days as asked, each bound defaulting to
/// `first(today)` and tomorrow (city time).
pub(crate) fn period(app: &App, from: &Option<String>, to: &Option<String>, first: impl Fn(time::Date) -> time::Date) -> (String, String) {
    let today = app.clock.now().to_offset(app.offset).date();
    let tomorrow = today.next_day().unwrap_or(today);
    let pick = |v: &Option<String>, d: time::Date| v.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| d.to_string());
    (pick(from, first(today)), pick(to, tomorrow))
}

/// The place a ticket belongs to, by name: street, else county.
pub(crate) fn place(app: &App, j: &Option<whistle_proto::v1::Jurisdiction>) -> String {
    let Some(j) = j else { return String::new() };
    [&j.community, &j.street, &j.county]
        .into_iter()
        .find(|c| !c.is_empty())
        .map(|c| app.city.place_name(c).unwrap_or_else(|| c.clone()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_the_way_back() {
        assert_eq!(encode("/queue?group=overdue&x=中"), "/queue%3Fgroup%3Doverdue%26x%3D%E4%B8%AD");
    }
}

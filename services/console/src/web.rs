//! Routes, sign-in and sign-out, the language switch and the static assets;
//! the pages themselves live in `queue`, `ticket` and `figures`.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use whistle_runtime::ops::Ops;

use crate::App;
use crate::backend::SignIn;
use crate::i18n::Lang;
use crate::pages;
use crate::session::{self, LANG_COOKIE, SESSION_COOKIE, SIGNIN_COOKIE, Session};

pub(crate) type AppState = State<Arc<App>>;

pub(crate) fn router(app: Arc<App>, ops: Ops) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/lang/{lang}", get(switch_lang))
        .route("/queue", get(crate::queue::page))
        .route("/queue/live", get(crate::queue::live))
        .route("/queue/events", get(crate::queue::events))
        .route("/tickets/{number}", get(crate::ticket::page))
        .route("/tickets/{number}/{action}", post(crate::ticket::act))
        .route("/intake", get(crate::intake::page).post(crate::intake::submit))
        .route("/intake/preview", get(crate::intake::preview))
        .route("/intake/places", get(crate::intake::places))
        .route("/map", get(crate::map::page))
        .route("/hot", get(crate::hot::page))
        .route("/figures", get(crate::figures::page))
        .route("/figures.csv", get(crate::figures::csv))
        .route("/static/console.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../assets/console.css")) }))
        .route("/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../assets/console.js")) }))
        .route_layer(axum::middleware::from_fn_with_state(ops, whistle_runtime::ops::track_http))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Pages are never framed, never cached, and run only their own scripts.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The reader's language: the switch's cookie, else Chinese.
pub(crate) fn lang(headers: &HeaderMap) -> Lang {
    session::cookie(headers, LANG_COOKIE).and_then(|l| Lang::parse(&l)).unwrap_or(Lang::Zh)
}

/// The signed-in session, or the answer that sends the browser to sign in.
pub(crate) async fn signed(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(id) = session::cookie(headers, SESSION_COOKIE) else { return Err(Redirect::to("/signin").into_response()) };
    match app.sessions.get(&id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Redirect::to("/signin").into_response()),
        Err(e) => {
            app.ops.redis_error(&e);
            Err(pages::failure(app, lang(headers), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))
        }
    }
}

/// The signed-in session of a desk or a unit; a hotline agent, who has
/// no desk, is sent to the intake desk.
pub(crate) async fn signed_desk(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let s = signed(app, headers).await?;
    if s.is_agent() { Err(Redirect::to("/intake").into_response()) } else { Ok(s) }
}

async fn home(State(app): AppState, headers: HeaderMap) -> Response {
    match signed(&app, &headers).await {
        Ok(s) if s.is_agent() => Redirect::to("/intake").into_response(),
        Ok(_) => Redirect::to("/queue").into_response(),
        Err(r) => r,
    }
}

/// The refusal of a form whose CSRF token is missing or not the session's.
pub(crate) fn csrf_refusal(app: &App, lang: Lang, s: &Session, sent: Option<&String>) -> Option<Response> {
    match sent {
        Some(t) if session::same(t, &s.csrf) => None,
        Some(_) | None => {
            tracing::warn!(caller = %s.caller(), "form refused: csrf token missing or wrong");
            Some(pages::csrf_refused(app, lang, Some(s)))
        }
    }
}

async fn signin_page(State(app): AppState, headers: HeaderMap) -> Response {
    // Another tab's sign-in form keeps working: the token is reused while it lasts.
    let csrf = session::cookie(&headers, SIGNIN_COOKIE)
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(session::random_token);
    let cookie = session::set_cookie(SIGNIN_COOKIE, &csrf, 3600, app.secure_cookies);
    ([(header::SET_COOKIE, cookie)], pages::signin(&app, lang(&headers), &csrf, None)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
    csrf: Option<String>,
}

async fn signin(State(app): AppState, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let lang = lang(&headers);
    let expected = session::cookie(&headers, SIGNIN_COOKIE);
    if !matches!((&expected, &form.csrf), (Some(e), Some(s)) if session::same(e, s)) {
        return pages::csrf_refused(&app, lang, None);
    }
    let csrf = expected.unwrap_or_default();
    let again = |status: StatusCode, msg: String| (status, pages::signin(&app, lang, &csrf, Some(&msg))).into_response();
    let who = match app.backends.sign_in(form.token.trim()).await {
        SignIn::Known(w) => w,
        SignIn::Unknown => return again(StatusCode::UNAUTHORIZED, app.texts.t(lang, "signin-wrong")),
        SignIn::Unavailable(detail) => {
            tracing::warn!(detail = %detail, "sign-in: desks unavailable");
            return again(StatusCode::SERVICE_UNAVAILABLE, app.texts.t(lang, "signin-unavailable"));
        }
    };
    if who.kind != "agent" && !app.backends.has_desk(&who.platform) {
        return again(StatusCode::FORBIDDEN, app.texts.args(lang, "signin-no-desk", &[("platform", who.platform.clone())]));
    }
    let s =
        Session { token: form.token.trim().to_owned(), kind: who.kind, id: who.id, platform: who.platform, csrf: session::random_token() };
    let id = match app.sessions.create(&s).await {
        Ok(id) => id,
        Err(e) => {
            app.ops.redis_error(&e);
            return pages::failure(&app, lang, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    tracing::info!(caller = %s.caller(), "signed in");
    let cookie = session::set_cookie(SESSION_COOKIE, &id, app.sessions.ttl_secs(), app.secure_cookies);
    let clear = session::set_cookie(SIGNIN_COOKIE, "", 0, app.secure_cookies);
    let mut resp = Redirect::to(if s.is_agent() { "/intake" } else { "/queue" }).into_response();
    resp.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is a header value"));
    resp.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("a cookie is a header value"));
    resp
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: Option<String>,
}

async fn signout(State(app): AppState, headers: HeaderMap, Form(form): Form<CsrfOnly>) -> Response {
    let lang = lang(&headers);
    let s = match signed(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&app, lang, &s, form.csrf.as_ref()) {
        return r;
    }
    if let Some(id) = session::cookie(&headers, SESSION_COOKIE)
        && let Err(e) = app.sessions.end(&id).await
    {
        app.ops.redis_error(&e);
    }
    tracing::info!(caller = %s.caller(), "signed out");
    let cookie = session::set_cookie(SESSION_COOKIE, "", 0, app.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}

/// Whether `back` is a path on this console and nowhere else: browsers
/// read `//host`, `/\host` and paths with control characters or spaces
/// (which they strip) as another site.
fn same_site_path(back: &str) -> bool {
    back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') && !back.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[derive(Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

/// Sets the language and goes back where the reader was (only to a page
/// of this console).
async fn switch_lang(State(app): AppState, Path(l): Path<String>, Query(q): Query<Back>) -> Response {
    let lang = Lang::parse(&l).unwrap_or(Lang::Zh);
    let back = q.back.filter(|b| same_site_path(b)).unwrap_or_else(|| "/queue".into());
    let cookie = session::set_cookie(LANG_COOKIE, lang.as_str(), 365 * 24 * 3600, app.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

#[cfg(test)]
mod tests {
    use super::same_site_path;

    #[test]
    fn the_language_switch_goes_back_only_to_a_page_of_this_console() {
        assert!(same_site_path("/queue?group=overdue"));
        for other in ["//evil.example", "/\\evil.example", "/\t/evil.example", "https://evil.example", "/ /x", ""] {
            assert!(!same_site_path(other), "{other:?}");
        }
    }
}

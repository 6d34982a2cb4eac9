//! The citizens' HTTP front: the SMS gateway posts replies ("1" satisfied,
//! "2 <reason>" not satisfied) to `POST /sms/reply`; the signed link in the
//! revisit SMS opens `GET /r/<token>`, a page that posts the answer back.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use whistle_domain::revisit::{parse_answer, verify_link};
use whistle_runtime::{Secret, Shutdown};

use crate::{Answerer, Core, Error, Next};

#[derive(Clone)]
struct AppState {
    core: Arc<Core>,
    sms_token: Option<Secret<String>>,
}

pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    sms_token: Option<Secret<String>>,
    ops: whistle_runtime::Ops,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/sms/reply", post(sms_reply))
        .route("/r/{token}", get(link_page).post(link_answer))
        .route_layer(axum::middleware::from_fn(traced))
        .route_layer(axum::middleware::from_fn_with_state(ops, whistle_runtime::ops::track_http))
        .with_state(AppState { core, sms_token });
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await
}

/// A span per request, child of the caller's `traceparent`; named by the
/// route, so a link's token is not recorded.
async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("-", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("http", method = %req.method(), route = %route);
    whistle_runtime::telemetry::set_parent(&span, req.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    next.run(req).instrument(span).await
}

/// An SMS gateway's reply callback: JSON or a form with `from` and `text`.
#[derive(Debug, Deserialize)]
struct SmsReply {
    from: String,
    text: String,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn next_name(n: Next) -> &'static str {
    match n {
        Next::Closed(_) => "closed",
        Next::Reopened { .. } => "reopened",
        Next::Retry { .. } => "retry",
    }
}

async fn sms_reply(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    // Closed unless a token is set; compared in constant time.
    let Some(token) = &s.sms_token else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "SMS replies are off: set revisit.sms_reply_token and give it to the SMS gateway");
    };
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !whistle_runtime::config::same_secret(sent.as_bytes(), token.expose().as_bytes()) {
        return problem(StatusCode::UNAUTHORIZED, "the SMS gateway must send `Authorization: Bearer <revisit.sms_reply_token>`");
    }
    // JSON or a form, whatever the content type says (`curl -d` labels JSON a form).
    let parsed = if body.trim_ascii_start().starts_with(b"{") {
        serde_json::from_slice::<SmsReply>(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes::<SmsReply>(&body).map_err(|e| e.to_string())
    };
    let reply = match parsed {
        Ok(r) => r,
        Err(e) => {
            return problem(StatusCode::BAD_REQUEST, format!("expected {{\"from\": \"<phone>\", \"text\": \"1\"}} or from=…&text=…: {e}"));
        }
    };
    let (outcome, reason) = match parse_answer(&reply.text) {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let ticket = match s.core.tasks().by_phone(&reply.from).await {
        Ok(Some(t)) => t,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "no revisit waits for this phone number"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match s.core.record(&ticket, outcome, &reason, &Answerer::Citizen).await {
        Ok(done) => {
            Json(json!({ "ticket_number": done.number, "outcome": outcome.as_str(), "next": next_name(done.next) })).into_response()
        }
        Err(e) => problem(status_of(&e), e.to_string()),
    }
}

const PAGE_STYLE: &str = "body{font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em}button{font-size:1.1em;margin:.3em}";

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>12345 回访</title><style>{PAGE_STYLE}</style><body>{body}</body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn link_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let ticket = match verify_link(&s.core.link_secret, &token) {
        Ok(t) => t,
        Err(e) => return (StatusCode::NOT_FOUND, page(&escape(&e.to_string()))).into_response(),
    };
    match s.core.tasks().get(&ticket).await {
        Ok(Some(task)) => page(&format!(
            "<h1>12345 回访 / Revisit</h1><p>工单 {n}：{r}</p><form method=\"post\">\
             <button name=\"answer\" value=\"1\">1 满意 / Satisfied</button>\
             <p><textarea name=\"reason\" placeholder=\"不满意的原因 / Why not\"></textarea></p>\
             <button name=\"answer\" value=\"2\">2 不满意 / Not satisfied</button></form>",
            n = escape(&task.number),
            r = escape(&task.result)
        ))
        .into_response(),
        Ok(None) => (StatusCode::GONE, page("<p>此回访已结束。This revisit is already over.</p>")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, page(&escape(&e.to_string()))).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct LinkAnswer {
    answer: String,
    #[serde(default)]
    reason: String,
}

async fn link_answer(State(s): State<AppState>, Path(token): Path<String>, axum::Form(a): axum::Form<LinkAnswer>) -> Response {
    let ticket = match verify_link(&s.core.link_secret, &token) {
        Ok(t) => t,
        Err(e) => return (StatusCode::NOT_FOUND, page(&escape(&e.to_string()))).into_response(),
    };
    let (outcome, _) = match parse_answer(&a.answer) {
        Ok(x) => x,
        Err(e) => return (StatusCode::BAD_REQUEST, page(&escape(&e.to_string()))).into_response(),
    };
    match s.core.record(&ticket, outcome, &a.reason, &Answerer::Citizen).await {
        Ok(done) => {
            page(&format!("<p>谢谢！工单 {} 已记录您的回复。Thank you, your answer is recorded.</p>", escape(&done.number))).into_response()
        }
        Err(e) => (status_of(&e), page(&escape(&e.to_string()))).into_response(),
    }
}

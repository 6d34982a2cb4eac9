//! Open311 GeoReport v2, served by intake over HTTP (base path
//! `/open311/v2`, the format chosen by the extension, `.json` or `.xml`):
//! outside systems and citizens' apps list the services, submit requests
//! and follow them. A request's number is answered only once its
//! `received` event is durable. Keys are stored hashed, each bound to the
//! external system and the channel it submits for, and rate-limited. The
//! citizen's page `/track/{number}` shows a ticket in their language.

mod catalog;
mod doc;
mod post;
mod query;
mod texts;
mod track;

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use whistle_domain::city::City;
use whistle_runtime::config::RevisitLink;
use whistle_runtime::{Shutdown, TicketStore};

use crate::numbers::Registrar;
use doc::Node;

/// `[open311]`: the API's keys, limits and what discovery says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Open311Settings {
    /// Keys, stored as SHA-256: `{ system = "fixmystreet", channel = "app", sha256 = "<hex>" }`.
    pub keys: Vec<ApiKey>,
    /// Requests a key may submit a minute (POSTs; reads are not limited).
    pub posts_per_minute: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The jurisdiction this endpoint serves; a request naming another is refused.
    pub jurisdiction_id: String,
    /// Where this API is reached from outside (discovery's endpoint url,
    /// the tracking links in notices).
    pub public_url: String,
    pub contact: String,
    pub key_service: String,
}

impl Default for Open311Settings {
    fn default() -> Self {
        Open311Settings {
            keys: Vec::new(),
            posts_per_minute: 120,
            max_body_bytes: 64 * 1024,
            jurisdiction_id: "demo-city.example".into(),
            public_url: "http://127.0.0.1:8031".into(),
            contact: "12345 hotline operations, ops@demo-city.example".into(),
            key_service: "Ask the 12345 hotline operations team for a key: ops@demo-city.example".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// The outside system the key belongs to (idempotency keys are its own).
    pub system: String,
    /// The channel its requests come in on (`app`, `web`, `external`, ...).
    pub channel: String,
    pub sha256: String,
    /// Answer a new request with a `token` to look up instead of its id.
    #[serde(default)]
    pub answer_with_token: bool,
}

/// What every handler shares.
pub struct Front {
    pub registrar: Registrar,
    pub store: TicketStore,
    pub city: Arc<City>,
    pub settings: Open311Settings,
    pub revisit: RevisitLink,
    pub offset: time::UtcOffset,
    pub clock: Arc<dyn whistle_domain::Clock>,
    keys: HashMap<String, ApiKey>,
    /// Per key: (tokens left, when last refilled).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Front {
    pub fn new(
        registrar: Registrar,
        store: TicketStore,
        city: Arc<City>,
        settings: Open311Settings,
        revisit: RevisitLink,
        offset: time::UtcOffset,
        clock: Arc<dyn whistle_domain::Clock>,
    ) -> whistle_runtime::Result<Self> {
        let mut keys = HashMap::new();
        for (i, k) in settings.keys.iter().enumerate() {
            let hex = k.sha256.trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(whistle_runtime::Error::Config(format!("open311.keys[{i}].sha256: not a SHA-256 in hex (64 characters)")));
            }
            if whistle_domain::Channel::parse(&k.channel).is_err() {
                return Err(whistle_runtime::Error::Config(format!("open311.keys[{i}].channel: unknown channel {:?}", k.channel)));
            }
            keys.insert(hex, k.clone());
        }
        Ok(Front { registrar, store, city, settings, revisit, offset, clock, keys, buckets: Mutex::new(HashMap::new()) })
    }

    /// The key holder, or 403.
    fn key(&self, given: Option<&str>) -> Result<&ApiKey, Fault> {
        let given = given.map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| Fault::forbidden("api_key is missing"))?;
        let hash = whistle_runtime::auth::hash_token(given);
        self.keys.get(&hash).ok_or_else(|| Fault::forbidden("invalid api_key received -- can't proceed with create_request"))
    }

    /// Takes one token of the key's bucket, or says when to come back.
    fn spend(&self, key: &ApiKey) -> Result<(), Fault> {
        let per_minute = f64::from(self.settings.posts_per_minute.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, at) = buckets.entry(key.sha256.clone()).or_insert((per_minute, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_minute / 60.0).min(per_minute);
        *at = now;
        if *tokens < 1.0 {
            let wait = ((1.0 - *tokens) * 60.0 / per_minute).ceil() as u64;
            return Err(Fault::bad(format!("rate limit: at most {per_minute} requests a minute for this key; retry in {wait} s")));
        }
        *tokens -= 1.0;
        Ok(())
    }

    fn time(&self, t: time::OffsetDateTime) -> String {
        t.to_offset(self.offset).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    }
}

/// An error as the spec lists them: the status, and `{code, description}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub status: StatusCode,
    pub description: String,
}

impl Fault {
    pub fn bad(d: impl Into<String>) -> Self {
        Fault { status: StatusCode::BAD_REQUEST, description: d.into() }
    }
    pub fn forbidden(d: impl Into<String>) -> Self {
        Fault { status: StatusCode::FORBIDDEN, description: d.into() }
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Fault { status: StatusCode::NOT_FOUND, description: d.into() }
    }
    pub fn unavailable(d: impl Into<String>) -> Self {
        Fault { status: StatusCode::SERVICE_UNAVAILABLE, description: d.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

/// `services.json` -> ("services", Json); an unknown extension is 404 (in XML,
/// the format every client reads).
fn split_format(path: &str) -> Result<(&str, Format), Fault> {
    if let Some(p) = path.strip_suffix(".json") {
        Ok((p, Format::Json))
    } else if let Some(p) = path.strip_suffix(".xml") {
        Ok((p, Format::Xml))
    } else {
        Err(Fault::not_found(format!("{path}: add .json or .xml to choose the format")))
    }
}

fn answer(format: Format, status: StatusCode, root: &str, node: &Node) -> Response {
    let (body, kind) = match format {
        Format::Xml => (doc::xml(root, node), "text/xml; charset=utf-8"),
        Format::Json => (doc::json(node).to_string(), "application/json; charset=utf-8"),
    };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body).into_response()
}

fn fault(format: Format, f: Fault) -> Response {
    let error = Node::Object(vec![("code", Node::number(f.status.as_u16())), ("description", Node::text(f.description))]);
    answer(format, f.status, "errors", &Node::List("error", vec![error]))
}

/// Query parameters, an empty value the same as an absent one (the spec).
pub(crate) fn params(raw: Option<&str>) -> Result<HashMap<String, String>, Fault> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| Fault::bad(format!("query string: {e}")))?;
    Ok(pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k, v.trim().to_owned())).collect())
}

pub async fn serve(listener: TcpListener, front: Arc<Front>, ops: whistle_runtime::Ops, shutdown: Shutdown) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/open311/v2/openapi.json", get(openapi))
        .route("/open311/v2/{*path}", get(read).post(post::create))
        .route("/track", get(track::form))
        .route("/track/{number}", get(track::page))
        // POST bodies are bounded by `max_body_bytes`, answered as Open311 errors.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn(traced))
        .route_layer(axum::middleware::from_fn_with_state(ops, whistle_runtime::ops::track_http))
        .with_state(front);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await
}

/// A span per request, child of the caller's `traceparent`, named by the
/// route (ticket numbers are not recorded).
async fn traced(req: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("-", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("http", method = %req.method(), route = %route);
    whistle_runtime::telemetry::set_parent(&span, req.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    next.run(req).instrument(span).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], include_str!("open311/openapi.json")).into_response()
}

/// Every GET of the API.
async fn read(State(front): State<Arc<Front>>, Path(path): Path<String>, RawQuery(raw): RawQuery, _h: HeaderMap) -> Response {
    let (resource, format) = match split_format(&path) {
        Ok(x) => x,
        Err(f) => return fault(Format::Xml, f),
    };
    let result = (|| {
        let q = params(raw.as_deref())?;
        if let Some(j) = q.get("jurisdiction_id")
            && *j != front.settings.jurisdiction_id
        {
            return Err(Fault::not_found(format!("jurisdiction_id {j:?} is not served here (this is {})", front.settings.jurisdiction_id)));
        }
        Ok(q)
    })();
    let q = match result {
        Ok(q) => q,
        Err(f) => return fault(format, f),
    };
    let parts: Vec<&str> = resource.split('/').collect();
    let done = match parts.as_slice() {
        ["discovery"] => Ok(("discovery", discovery(&front))),
        ["services"] => Ok(("services", Node::List("service", catalog::services().iter().map(catalog::Service::node).collect()))),
        ["services", code] => match catalog::find(code) {
            Some(s) => Ok(("service_definition", s.definition())),
            None => Err(Fault::not_found(format!("service_code {code:?} does not exist"))),
        },
        ["requests"] => query::list(&front, &q).await.map(|n| ("service_requests", n)),
        ["requests", id] => query::one(&front, id).await.map(|n| ("service_requests", n)),
        ["tokens", token] => query::token(&front, token).await.map(|n| ("service_requests", n)),
        _ => Err(Fault::not_found(format!("{resource} is not a GeoReport v2 resource"))),
    };
    match done {
        Ok((root, node)) => answer(format, StatusCode::OK, root, &node),
        Err(f) => fault(format, f),
    }
}

fn discovery(front: &Front) -> Node {
    let changeset = "2026-12-01T00:00:00+08:00";
    let formats = Node::List("format", vec![Node::text("text/xml"), Node::text("application/json")]);
    let endpoint = Node::Object(vec![
        ("specification", Node::text("http://wiki.open311.org/GeoReport_v2")),
        ("url", Node::text(format!("{}/open311/v2", front.settings.public_url.trim_end_matches('/')))),
        ("changeset", Node::text(changeset)),
        ("type", Node::text("production")),
        ("formats", formats),
    ]);
    Node::Object(vec![
        ("changeset", Node::text(changeset)),
        ("contact", Node::text(front.settings.contact.clone())),
        ("key_service", Node::text(front.settings.key_service.clone())),
        ("endpoints", Node::List("endpoint", vec![endpoint])),
    ])
}

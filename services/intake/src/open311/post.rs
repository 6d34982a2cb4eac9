//! `POST requests.{fmt}`: a form as the spec sends it becomes a registered
//! request; the answer carries its number only once the `received` event is
//! durable. An `Idempotency-Key` makes a retried POST return the same one.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::Arc;
use whistle_domain::RequestFields;

use super::doc::Node;
use super::{Fault, Format, Front, answer, catalog, fault, split_format, texts};
use crate::numbers::RegisterError;

pub async fn create(State(front): State<Arc<Front>>, Path(path): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let format = match split_format(&path) {
        Ok(("requests", f)) => f,
        Ok((other, f)) => return fault(f, Fault::not_found(format!("POST {other}: only requests takes a POST"))),
        Err(f) => return fault(Format::Xml, f),
    };
    let limit = front.settings.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return fault(format, Fault::bad(format!("the body is larger than {limit} bytes"))),
    };
    match submit(&front, &headers, &body).await {
        Ok(node) => answer(format, StatusCode::OK, "service_requests", &node),
        Err(f) => fault(format, f),
    }
}

/// The form's fields; `attribute[CODE]` and `attribute[CODE][]` (repeated
/// for a list) gathered by code.
struct Form {
    fields: BTreeMap<String, String>,
    attributes: BTreeMap<String, Vec<String>>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Form, Fault> {
        well_formed(body).map_err(|why| Fault::bad(format!("the body is not a valid form (application/x-www-form-urlencoded): {why}")))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| Fault::bad(format!("the body is not a valid form (application/x-www-form-urlencoded): {e}")))?;
        let mut fields = BTreeMap::new();
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            if let Some(code) = k.strip_prefix("attribute[").and_then(|r| r.strip_suffix("][]").or_else(|| r.strip_suffix(']'))) {
                attributes.entry(code.to_owned()).or_default().push(v);
            } else if !v.trim().is_empty() {
                // The first value of a repeated field counts (FixMyStreet sends several media_url).
                fields.entry(k).or_insert_with(|| v.trim().to_owned());
            }
        }
        Ok(Form { fields, attributes })
    }

    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
}

/// Every `name=value` pair has a name, every `%` two hex digits, and the
/// decoded text is UTF-8.
fn well_formed(body: &[u8]) -> Result<(), String> {
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        if name.is_empty() {
            return Err("a field without a name".into());
        }
        let mut i = 0;
        let mut decoded = Vec::with_capacity(pair.len());
        while i < pair.len() {
            match pair[i] {
                b'%' => {
                    let hex = pair.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                    decoded.push(hex.ok_or_else(|| format!("a broken %-escape in {:?}", String::from_utf8_lossy(pair)))?);
                    i += 3;
                }
                b'+' => {
                    decoded.push(b' ');
                    i += 1;
                }
                b => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        std::str::from_utf8(&decoded).map_err(|_| "text that is not UTF-8".to_owned())?;
    }
    Ok(())
}

fn number(form: &Form, field: &'static str) -> Result<Option<f64>, Fault> {
    match form.get(field) {
        "" => Ok(None),
        v => v.parse::<f64>().map(Some).map_err(|_| Fault::bad(format!("{field}: {v:?} is not a number"))),
    }
}

async fn submit(front: &Front, headers: &HeaderMap, body: &[u8]) -> Result<Node, Fault> {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !kind.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(Fault::bad(format!(
            "Content-Type must be application/x-www-form-urlencoded, as GeoReport v2 sends it (got {:?})",
            if kind.is_empty() { "none" } else { kind }
        )));
    }
    let form = Form::parse(body)?;
    let key = front.key(Some(form.get("api_key")))?;
    front.spend(key)?;
    let jurisdiction = form.get("jurisdiction_id");
    if !jurisdiction.is_empty() && jurisdiction != front.settings.jurisdiction_id {
        return Err(Fault::not_found(format!("jurisdiction_id {jurisdiction:?} is not served here")));
    }
    let code = form.get("service_code");
    if code.is_empty() {
        return Err(Fault::bad("service_code is required (see services.json)"));
    }
    let service = catalog::find(code).ok_or_else(|| Fault::not_found(format!("service_code {code:?} does not exist")))?;
    // Where: a point, an address, or an address id (a community or street code of the city's gazetteer).
    let (lat, lon) = (number(&form, "lat")?, number(&form, "long")?);
    let mut address = form.get("address_string").to_owned();
    let address_id = form.get("address_id");
    if !address_id.is_empty() {
        let id = address_id;
        let place = front
            .city
            .place_name(id)
            .ok_or_else(|| Fault::bad(format!("address_id {id:?} is not a community, street or district code of this city")))?;
        if address.is_empty() {
            address = place;
        }
    }
    if lat.is_none() && lon.is_none() && address.is_empty() {
        return Err(Fault::bad("a location is required: lat and long, or address_string, or address_id"));
    }
    let description = form.get("description");
    if description.chars().count() > whistle_domain::request::MAX_TEXT_CHARS {
        return Err(Fault::bad(format!(
            "description has {} characters; the limit is {}",
            description.chars().count(),
            whistle_domain::request::MAX_TEXT_CHARS
        )));
    }
    service.check(&form.attributes).map_err(|e| Fault::bad(e.0))?;
    let name = [form.get("first_name"), form.get("last_name")].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    let idempotency = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
    if idempotency.is_some_and(|k| k.len() > 150) {
        return Err(Fault::bad("Idempotency-Key: at most 150 characters"));
    }
    let fields = RequestFields {
        channel: key.channel.clone(),
        external_id: idempotency.map(|k| format!("open311:{}:{k}", key.system)).unwrap_or_default(),
        // A report may be only a service and a place: its name says what.
        text: if description.is_empty() { service.name.to_owned() } else { description.to_owned() },
        address,
        lat,
        lon,
        citizen_name: name,
        citizen_phone: form.get("phone").to_owned(),
        citizen_email: form.get("email").to_owned(),
        language: form.get("language").to_owned(),
        service_code: code.to_owned(),
        attributes: form.attributes.clone(),
        media_url: form.get("media_url").to_owned(),
    };
    let request = fields.validate().map_err(|e| match e.field() {
        Some("lat" | "lon") => Fault::bad(e.to_string().replace("lon:", "long:")),
        _ => Fault::bad(e.to_string()),
    })?;
    let language = request.language;
    let done = front.registrar.register(request).await.map_err(|e| match e {
        RegisterError::Busy => Fault::bad(e.to_string()),
        RegisterError::Unavailable(_) => Fault::unavailable(e.to_string()),
    })?;
    tracing::info!(ticket = %done.ticket_id, system = %key.system, duplicate = done.duplicate, "open311 request registered");
    let url = format!("{}/track/{}", front.settings.public_url.trim_end_matches('/'), done.number);
    let notice = texts::of(language).notice.replace("{number}", done.number.as_str()).replace("{url}", &url);
    let account = Node::opt(Some(form.get("account_id")).filter(|a| !a.is_empty()));
    let id = if key.answer_with_token {
        ("token", Node::text(done.ticket_id.to_string()))
    } else {
        ("service_request_id", Node::text(done.number.to_string()))
    };
    Ok(Node::List("request", vec![Node::Object(vec![id, ("service_notice", Node::text(notice)), ("account_id", account)])]))
}

//! The delivery channels: SMS through an HTTP gateway (URL, auth header and
//! JSON body template in config), email through SMTP (lettre), and webhooks
//! (HTTP POST of the message as JSON). Each send is one try; retries,
//! backoff and de-duplication are the caller's. Every gateway has its own
//! rate limit. HTTPS and SMTP over TLS (STARTTLS or implicit) trust the
//! bundled Mozilla roots plus the CA of `notifier.ca_file`.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use whistle_runtime::Secret;

use crate::{Error, Message, Result};

/// Why one try failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The gateway is down or busy (connection refused, timeout, 5xx, 408,
    /// 429, SMTP 4xx): try again later.
    Transient(String),
    /// The gateway refused this message (4xx, SMTP 5xx, a bad address).
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(r) => write!(f, "{r} (transient)"),
            Failure::Permanent(r) => write!(f, "{r} (refused)"),
        }
    }
}

/// At most `per_second` sends, spaced evenly.
pub struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        let interval = if per_second > 0.0 { Duration::from_secs_f64(1.0 / per_second) } else { Duration::ZERO };
        RateLimiter { interval, next: tokio::sync::Mutex::new(Instant::now()) }
    }

    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

fn http_failure(status: reqwest::StatusCode) -> Failure {
    let reason = format!("HTTP {status}");
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Failure::Transient(reason)
    } else {
        Failure::Permanent(reason)
    }
}

/// One HTTP try, with the message's idempotency key and the trace context:
/// 2xx delivered; 408, 429, 5xx and connection errors transient; other 4xx refused.
async fn post(req: reqwest::RequestBuilder, m: &Message) -> Result<(), Failure> {
    let mut req = req.header("idempotency-key", &m.message_id);
    if let Some(tp) = whistle_runtime::telemetry::current_traceparent() {
        req = req.header("traceparent", tp);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(http_failure(resp.status())),
        // Without the URL (a gateway's URL may carry a key), with the cause
        // (an untrusted certificate, a refused connection).
        Err(e) => Err(Failure::Transient(with_causes(&e.without_url()))),
    }
}

/// An error and what caused it, as one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut said = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_said = c.to_string();
        if !said.contains(&c_said) {
            said = format!("{said}: {c_said}");
        }
        cause = c.source();
    }
    said
}

/// Which certificate authorities the notifier trusts besides the bundled
/// roots: the PEM file `notifier.ca_file` names (a city's own CA).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pem: Option<Vec<u8>>,
}

impl Trust {
    pub fn load(ca_file: Option<&std::path::Path>) -> Result<Trust> {
        let Some(file) = ca_file else { return Ok(Trust::default()) };
        let pem = std::fs::read(file).map_err(|e| Error::Config(format!("notifier.ca_file {}: {e}", file.display())))?;
        let bad = |why: String| Error::Config(format!("notifier.ca_file {}: {why}", file.display()));
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        Ok(Trust { pem: Some(pem) })
    }

    fn http(&self, timeout: Duration) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder().timeout(timeout);
        if let Some(pem) = &self.pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(b.build()?)
    }
}

/// Webhooks: the message as JSON, with an idempotency key.
pub struct Webhook {
    http: reqwest::Client,
    pub limiter: RateLimiter,
}

impl Webhook {
    pub fn new(timeout: Duration, per_second: f64, trust: &Trust) -> Result<Self> {
        Ok(Webhook { http: trust.http(timeout)?, limiter: RateLimiter::new(per_second) })
    }

    pub async fn send(&self, url: &str, m: &Message) -> Result<(), Failure> {
        self.limiter.acquire().await;
        post(self.http.post(url).json(m), m).await
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    /// The gateway's send URL; empty disables SMS.
    pub url: String,
    /// e.g. `Authorization`.
    pub auth_header: String,
    /// e.g. `Bearer <key>`; never logged.
    pub auth_value: Secret<String>,
    /// The JSON body with placeholders `{{to}}`, `{{text}}`,
    /// `{{message_id}}`, `{{template}}`, `{{ticket_number}}`, `{{language}}`,
    /// `{{recipient}}`, `{{recipient_kind}}`; values are JSON-escaped.
    pub body_template: String,
    pub per_second: f64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            url: String::new(),
            auth_header: "Authorization".into(),
            auth_value: Secret::default(),
            body_template: r#"{"to": "{{to}}", "text": "{{text}}", "id": "{{message_id}}"}"#.into(),
            per_second: 50.0,
        }
    }
}

/// SMS through an HTTP gateway.
pub struct Sms {
    http: reqwest::Client,
    settings: SmsSettings,
    pub limiter: RateLimiter,
}

/// A string as it goes inside a JSON string literal.
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

impl Sms {
    pub fn new(settings: &SmsSettings, timeout: Duration, trust: &Trust) -> Result<Option<Self>> {
        if settings.url.is_empty() {
            return Ok(None);
        }
        let probe = Self::render(&settings.body_template, "13800000000", &Message::probe());
        serde_json::from_str::<serde_json::Value>(&probe)
            .map_err(|e| Error::Config(format!("notifier.sms.body_template is not JSON once filled in: {e}")))?;
        Ok(Some(Sms { http: trust.http(timeout)?, settings: settings.clone(), limiter: RateLimiter::new(settings.per_second) }))
    }

    fn render(template: &str, to: &str, m: &Message) -> String {
        let kind = serde_json::to_value(&m.recipient).ok().and_then(|v| v["kind"].as_str().map(str::to_owned)).unwrap_or_default();
        [
            ("{{to}}", to.to_owned()),
            ("{{text}}", m.text.clone()),
            ("{{message_id}}", m.message_id.clone()),
            ("{{template}}", m.template.as_str().to_owned()),
            ("{{ticket_number}}", m.ticket_number.clone()),
            ("{{language}}", m.language.to_owned()),
            ("{{recipient}}", m.recipient.id()),
            ("{{recipient_kind}}", kind),
        ]
        .iter()
        .fold(template.to_owned(), |body, (k, v)| body.replace(k, &json_escaped(v)))
    }

    pub async fn send(&self, to: &str, m: &Message) -> Result<(), Failure> {
        self.limiter.acquire().await;
        let mut req = self.http.post(&self.settings.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(Self::render(
            &self.settings.body_template,
            to,
            m,
        ));
        if !self.settings.auth_header.is_empty() && !self.settings.auth_value.expose().is_empty() {
            req = req.header(self.settings.auth_header.as_str(), self.settings.auth_value.expose().as_str());
        }
        post(req, m).await
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    /// Empty disables email.
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret<String>,
    pub from: String,
    pub per_second: f64,
    /// `none` (a relay on the local network), `starttls` (upgrade the
    /// connection, required: refused if the server does not offer it) or
    /// `tls` (TLS from the start, usually port 465).
    pub tls: SmtpTls,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Tls,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: String::new(),
            port: 25,
            username: String::new(),
            password: Secret::default(),
            from: "12345 <noreply@12345.example>".into(),
            per_second: 20.0,
            tls: SmtpTls::None,
        }
    }
}

/// Email through SMTP: plain, STARTTLS or TLS as `tls` says.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    pub limiter: RateLimiter,
}

impl Smtp {
    pub fn new(s: &SmtpSettings, timeout: Duration, trust: &Trust) -> Result<Option<Self>> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        if s.host.is_empty() {
            return Ok(None);
        }
        let from = s.from.parse().map_err(|e| Error::Config(format!("notifier.smtp.from {:?}: {e}", s.from)))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str()).port(s.port).timeout(Some(timeout));
        if s.tls != SmtpTls::None {
            let bad = |e: lettre::transport::smtp::Error| Error::Config(format!("notifier.smtp.tls: {e}"));
            let mut p = TlsParameters::builder(s.host.clone());
            if let Some(pem) = &trust.pem {
                p = p.add_root_certificate(Certificate::from_pem(pem).map_err(bad)?);
            }
            let params = p.build().map_err(bad)?;
            b = b.tls(if s.tls == SmtpTls::Starttls { Tls::Required(params) } else { Tls::Wrapper(params) });
        }
        if !s.username.is_empty() {
            b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(s.username.clone(), s.password.expose().clone()));
        }
        Ok(Some(Smtp { transport: b.build(), from, limiter: RateLimiter::new(s.per_second) }))
    }

    pub async fn send(&self, to: &str, m: &Message) -> Result<(), Failure> {
        let to: lettre::message::Mailbox = to.parse().map_err(|e| Failure::Permanent(format!("bad address: {e}")))?;
        let subject = if m.ticket_number.is_empty() { "12345".to_owned() } else { format!("12345 {}", m.ticket_number) };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@whistle>", m.message_id.replace(':', "."))))
            .header(ContentType::TEXT_PLAIN)
            .body(m.text.clone())
            .map_err(|e| Failure::Permanent(format!("cannot build the email: {e}")))?;
        self.limiter.acquire().await;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(Failure::Transient(format!("SMTP: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_bodies_escape_what_they_fill_in() {
        let mut m = Message::probe();
        m.text = "他说\"漏水\"\n第二行".into();
        let body = Sms::render(r#"{"to": "{{to}}", "text": "{{text}}", "kind": "{{recipient_kind}}"}"#, "+86 138", &m);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "他说\"漏水\"\n第二行");
        assert_eq!(v["to"], "+86 138");
        assert_eq!(v["kind"], "citizen");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_sends() {
        let l = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        // Paused clock: the sleeps auto-advance it exactly.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}

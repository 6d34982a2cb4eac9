//! The webhook channel: POST the message as JSON. 2xx is delivered; 408, 429,
//! 5xx and connection errors are retried with exponential backoff and
//! jitter; other 4xx are permanent.

use std::time::Duration;

use crate::{Message, NotifierSettings, Result};

pub struct Client {
    http: reqwest::Client,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Client {
    pub fn new(s: &NotifierSettings) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_millis(s.request_timeout_ms)).build()?;
        Ok(Client {
            http,
            max_attempts: s.max_attempts.max(1),
            initial_backoff: Duration::from_millis(s.initial_backoff_ms),
            max_backoff: Duration::from_millis(s.max_backoff_ms),
        })
    }

    /// Delivers the message; returns the number of attempts it took, or why
    /// it failed for good.
    pub async fn deliver(&self, url: &str, m: &Message) -> std::result::Result<u32, String> {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let mut req = self.http.post(url).header("idempotency-key", &m.message_id).json(m);
            if let Some(tp) = whistle_runtime::telemetry::current_traceparent() {
                req = req.header("traceparent", tp);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(attempt),
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("HTTP {status}");
                    let retryable = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    if !retryable {
                        return Err(format!("{last} (not retried)"));
                    }
                }
                Err(e) => last = format!("{e}"),
            }
            if attempt < self.max_attempts {
                let wait = whistle_runtime::consumer::backoff_between(self.initial_backoff, self.max_backoff, attempt);
                tracing::warn!(message = %m.message_id, attempt, wait_ms = wait.as_millis() as u64, error = %last, "delivery failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(format!("{last} after {} attempts", self.max_attempts))
    }
}

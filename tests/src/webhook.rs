//! A real HTTP receiver for the notifier to deliver to (as the webhook
//! endpoint, or as the SMS gateway): it records every message it accepts and
//! can be told to fail for a while or to refuse.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Behaviour {
    Accept,
    /// Answer 503 to the first `n` requests, then accept.
    FailFirst(usize),
    /// Refuse every message (400 Bad Request).
    Reject,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Value>,
    failed: usize,
    requests: usize,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    addr: std::net::SocketAddr,
    inner: Arc<Mutex<Inner>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl WebhookReceiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind webhook receiver");
        let addr = listener.local_addr().expect("addr");
        let me = WebhookReceiver { addr, inner: Arc::default(), behaviour: Arc::new(Mutex::new(behaviour)) };
        let app = Router::new().route("/messages", post(receive)).with_state(me.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        me
    }

    pub fn url(&self) -> String {
        format!("http://{}/messages", self.addr)
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Accepted messages matching `pred`.
    pub fn messages(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.inner.lock().unwrap().accepted.iter().filter(|m| pred(m)).cloned().collect()
    }

    pub fn failed(&self) -> usize {
        self.inner.lock().unwrap().failed
    }

    /// Waits until at least `n` accepted messages match `pred`.
    pub async fn wait_for(&self, n: usize, within: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        crate::eventually(&format!("{n} messages"), within, Duration::from_millis(25), || {
            let found = self.messages(&pred);
            async move { if found.len() >= n { Ok(found) } else { Err(found) } }
        })
        .await
    }
}

async fn receive(State(me): State<WebhookReceiver>, _headers: HeaderMap, Json(body): Json<Value>) -> StatusCode {
    let mut inner = me.inner.lock().unwrap();
    inner.requests += 1;
    let fail = match &*me.behaviour.lock().unwrap() {
        Behaviour::Accept => None,
        Behaviour::FailFirst(n) => (inner.requests <= *n).then_some(StatusCode::SERVICE_UNAVAILABLE),
        Behaviour::Reject => Some(StatusCode::BAD_REQUEST),
    };
    if let Some(status) = fail {
        inner.failed += 1;
        return status;
    }
    inner.accepted.push(body);
    StatusCode::OK
}

/// `template` and `ticket_number` of a message match.
pub fn is(template: &str, number: &str) -> impl Fn(&Value) -> bool {
    let (t, n) = (template.to_owned(), number.to_owned());
    move |m| m["template"] == t.as_str() && m["ticket_number"] == n.as_str()
}

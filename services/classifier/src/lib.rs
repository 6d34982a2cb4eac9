//! Classifier: consumes `received` events and publishes `classified` with
//! the category, urgency, whistle level, jurisdiction and language of the
//! request, the model's confidence and its runners-up. The model
//! (`services/classifier/model/whistle.model`, trained from the corpus by
//! `whistle-classifier train`) reads the text; the city's signals overrule
//! it where danger or a dragged-on case shows; the ticket history raises
//! the whistle level of a repeated problem; the gazetteer places it. A
//! request the model is unsure of is marked for the city desk's triage
//! queue instead of being dispatched. Idempotent: the `classified` event id
//! derives from the `received` event id.

pub mod answers;
pub mod cli;
pub mod corpus;
pub mod engine;
pub mod eval;
pub mod features;
pub mod gazetteer;
pub mod history;
pub mod model;
mod preview;
pub mod signals;
pub mod text;
pub mod training;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, SystemClock};
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::ops::OpsServer;
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, Topics};

pub use engine::{Engine, Input, Outcome};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// The city file (category word lists, signals, gazetteer) and its
    /// time (the month a request arrived in).
    pub city: whistle_runtime::config::CitySettings,
    pub classifier: ClassifierSettings,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["classifier"];

    fn check(&self) -> whistle_runtime::Result<()> {
        use whistle_runtime::config::in_range;
        self.city.offset()?;
        in_range("classifier.triage_below", self.classifier.triage_below, 0.0..=1.0)?;
        in_range("classifier.history_check_ms", self.classifier.history_check_ms, 1..)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierSettings {
    /// The model file `whistle-classifier train` writes.
    pub model: PathBuf,
    /// Below this confidence a ticket waits on the city desk's triage
    /// queue instead of being dispatched.
    pub triage_below: f32,
    pub group: String,
    /// How often to check that Redis still holds the history.
    pub history_check_ms: u64,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub ops_listen: std::net::SocketAddr,
    /// When a consultation would be answered at once from the knowledge
    /// base, and when its matches only suggested (the `answers` benchmark).
    pub answers: whistle_domain::knowledge::Thresholds,
    /// The preview's gRPC listen address (the intake desk asks what a
    /// request would be classified as); port 0 picks a free port.
    pub listen: std::net::SocketAddr,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        ClassifierSettings {
            model: "services/classifier/model/whistle.model".into(),
            triage_below: 0.5,
            group: "classifier".into(),
            history_check_ms: 2000,
            ops_listen: ([127, 0, 0, 1], 9182).into(),
            listen: ([127, 0, 0, 1], 50057).into(),
            answers: whistle_domain::knowledge::Thresholds::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("model: {0}")]
    Model(String),
    #[error("corpus: {0}")]
    Corpus(String),
    #[error("{0}")]
    Io(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Classifier {
    config: Config,
    handler: Arc<ClassifyHandler>,
    producer: EventProducer,
    ops: OpsServer,
    listener: tokio::net::TcpListener,
    preview: preview::Preview,
}

impl Classifier {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let city = Arc::new(config.city.load()?);
        let engine = Arc::new(Engine::load(&config.classifier.model, &city, config.classifier.triage_below)?);
        let offset = config.city.offset()?;
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let redis = whistle_runtime::redis_client::connect(&config.redis).await?;
        let ops = OpsServer::for_service("classifier", config.classifier.ops_listen, redis.clone(), &producer).await?;
        let history = history::History::new(redis, &config.redis.key_prefix, engine.repeat_rule().window_days);
        let addr = config.classifier.listen;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let preview = preview::Preview { engine: engine.clone(), city };
        let handler = Arc::new(ClassifyHandler { engine, history, producer: producer.clone(), clock, offset });
        Ok(Classifier { config, handler, producer, ops, listener, preview })
    }

    /// Where the preview's gRPC is served.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.classifier.listen)
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> std::net::SocketAddr {
        self.ops.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let topics = Topics::new(&self.config.kafka);
        let h = &self.handler;
        if !h.history.alive().await? {
            let n = h.history.rebuild(&self.config.kafka, h.clock.now()).await?;
            tracing::info!(reports = n, "repeat history rebuilt from the events topic");
        }
        let watch =
            spawn_supervised("history-watch", &shutdown, watch_history(self.handler.clone(), self.config.clone(), shutdown.clone()));
        let settings = ConsumerSettings::new(self.ops.ops(), self.config.classifier.group.clone(), vec![topics.events()]);
        let consumer = consumer::spawn("classify", &self.config.kafka, settings, self.handler.clone(), self.producer.clone(), &shutdown);
        let metrics = self.ops.ops().clone();
        let ops = self.ops.spawn(&shutdown);
        let (_health, health) = whistle_runtime::ops::grpc_health();
        let router = tonic::transport::Server::builder()
            .trace_fn(whistle_runtime::telemetry::grpc_span)
            .layer(metrics.grpc_layer())
            .add_service(health)
            .add_service(whistle_runtime::ops::grpc_reflection()?)
            .add_service(whistle_proto::v1::classifier_server::ClassifierServer::new(self.preview));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.listener);
        let stop = shutdown.clone();
        let grpc = spawn_supervised("preview-grpc", &shutdown, async move {
            router.serve_with_incoming_shutdown(incoming, async move { stop.wait().await }).await.map_err(Error::Serve)
        });
        shutdown.wait().await;
        drain(vec![consumer, watch, ops], Duration::from_secs(15)).await;
        let _ = grpc.await;
        self.producer.flush(Duration::from_secs(5));
        Ok(())
    }
}

/// Rebuilds the history whenever Redis lost it while running.
async fn watch_history(h: Arc<ClassifyHandler>, config: Config, shutdown: Shutdown) -> whistle_runtime::Result<()> {
    let every = Duration::from_millis(config.classifier.history_check_ms.max(50));
    while whistle_runtime::shutdown::sleep_or_shutdown(every, &shutdown).await {
        match h.history.alive().await {
            Ok(true) => {}
            Ok(false) => match h.history.rebuild(&config.kafka, h.clock.now()).await {
                Ok(n) => tracing::warn!(
                    reports = n,
                    "redis lost the repeat history or restarted (it may lack the last writes); rebuilt from the events topic"
                ),
                Err(e) => tracing::warn!(error = %e, "repeat history rebuild failed; will try again"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot check the repeat history"),
        }
    }
    Ok(())
}

struct ClassifyHandler {
    engine: Arc<Engine>,
    history: history::History,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    offset: time::UtcOffset,
}

impl Handler for ClassifyHandler {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let EventKind::Received { request, .. } = &event.kind else {
            return Ok(());
        };
        let local = event.occurred_at.to_offset(self.offset);
        let reading = self.engine.read(&Input::of(request, Some((u8::from(local.month()), local.day()))));
        let earlier = match history::place_of(&request.location.address, &reading.jurisdiction) {
            Some(place) => {
                Some(self.history.record(reading.category, &place, &event.ticket_id, event.occurred_at).await.map_err(|e| match e {
                    Error::Runtime(e) => HandleError::from(e),
                    e => HandleError::Retry(e.to_string()),
                })?)
            }
            None => None,
        };
        let o = self.engine.finish(reading, earlier);
        tracing::info!(
            ticket = %event.ticket_id,
            category = %o.category,
            urgency = %o.urgency,
            whistle = %o.whistle_level,
            confidence = o.confidence,
            triage = o.triage,
            street = o.jurisdiction.street.as_deref().unwrap_or(""),
            "classified"
        );
        let out = Event {
            id: EventId::derived(&event.id, "classified"),
            ticket_id: event.ticket_id,
            occurred_at: self.clock.now(),
            actor: Actor::system("classifier"),
            kind: EventKind::Classified {
                category: o.category,
                urgency: o.urgency,
                whistle_level: o.whistle_level,
                jurisdiction: o.jurisdiction,
                matched_rules: o.matched,
                language: o.language,
                confidence: o.confidence,
                runners_up: o.runners_up,
                triage: o.triage,
                answers: Vec::new(),
                answered: false,
            },
        };
        self.producer.publish(&out).await?;
        Ok(())
    }
}

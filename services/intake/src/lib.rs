//! Intake: the front door. Channels call `SubmitRequest` over gRPC; external
//! systems may publish to the `intake-requests` topic. A request is validated,
//! given a ticket number, and recorded as a `received` event; the number goes
//! back to the citizen only after the broker has acknowledged that event.
//! Intake also runs the projector that keeps each ticket's current state in
//! Redis, which `GetTicket` reads.

mod grpc;
mod numbers;
pub mod open311;
mod projector;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use whistle_domain::{Clock, SystemClock};
use whistle_runtime::auth;
use whistle_runtime::consumer::{self, ConsumerSettings};
use whistle_runtime::ops::OpsServer;
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

pub use numbers::Registrar;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub city: whistle_runtime::config::CitySettings,
    pub intake: IntakeSettings,
    pub open311: open311::Open311Settings,
    /// The revisit link the tracking page offers (`[revisit]`, shared).
    pub revisit: whistle_runtime::config::RevisitLink,
    pub deployment: whistle_runtime::config::Deployment,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["intake", "open311"];

    fn check(&self) -> whistle_runtime::Result<()> {
        self.city.offset()?;
        whistle_runtime::config::in_range("open311.posts_per_minute", self.open311.posts_per_minute, 1..)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeSettings {
    /// gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Consumer group of the projector.
    pub projector_group: String,
    /// HTTP listen address (Open311, the tracking page); port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub ops_listen: SocketAddr,
    /// Who may look a ticket up by its number without the citizen's phone
    /// (agents, desks, the console), hashed like the desks' tokens:
    /// `{ caller = "agent:zhao", sha256 = "<hex>" }`.
    pub tokens: Vec<auth::TokenEntry>,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            listen: ([127, 0, 0, 1], 50051).into(),
            projector_group: "intake-projector".into(),
            tokens: Vec::new(),
            http_listen: ([127, 0, 0, 1], 8031).into(),
            ops_listen: ([127, 0, 0, 1], 9181).into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("config: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A built intake service, listening, not yet serving.
pub struct Intake {
    config: Config,
    listener: TcpListener,
    http: TcpListener,
    front: Arc<open311::Front>,
    registrar: Registrar,
    store: TicketStore,
    producer: EventProducer,
    ops: OpsServer,
}

impl Intake {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let offset = config.city.offset()?;
        config.deployment.require_secret("revisit.link_secret", Some(&config.revisit.link_secret))?;
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let store = TicketStore::connect(&config.redis).await?;
        let registrar = Registrar::new(store.clone(), producer.clone(), clock.clone(), offset);
        let city = Arc::new(config.city.load()?);
        let front =
            open311::Front::new(registrar.clone(), store.clone(), city, config.open311.clone(), config.revisit.clone(), offset, clock)?;
        let addr = config.intake.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let addr = config.intake.http_listen;
        let http = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let ops = OpsServer::for_service("intake", config.intake.ops_listen, store.redis(), &producer).await?;
        Ok(Intake { config, listener, http, front: Arc::new(front), registrar, store, producer, ops })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.intake.listen)
    }

    /// Where Open311 and the tracking page listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.intake.http_listen)
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr()
    }

    /// Serves gRPC and runs the projector and the intake-topic consumer until
    /// shutdown, then drains.
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let Intake { config, listener, http, front, registrar, store, producer, ops } = self;
        let tokens = auth::Tokens::new("intake.tokens", &config.intake.tokens)?;
        let metrics = ops.ops().clone();
        let ops = ops.spawn(&shutdown);
        let topics = Topics::new(&config.kafka);
        // Redis may have lost the projection: rebuild it from Kafka before
        // projecting anything new, and again whenever its marker disappears.
        rebuild_if_lost(&store, &config.kafka, &registrar).await?;
        let watch = spawn_supervised("projection-watch", &shutdown, {
            let (store, kafka, shutdown, registrar) = (store.clone(), config.kafka.clone(), shutdown.clone(), registrar.clone());
            async move {
                while whistle_runtime::shutdown::sleep_or_shutdown(Duration::from_secs(2), &shutdown).await {
                    // A Redis or broker blip is looked at again next round.
                    match rebuild_if_lost(&store, &kafka, &registrar).await {
                        Err(e) if e.is_transient() => tracing::warn!(error = %e, "cannot check the projection; will look again"),
                        r => r?,
                    }
                }
                Ok::<_, whistle_runtime::Error>(())
            }
        });
        let projector = consumer::spawn(
            "projector",
            &config.kafka,
            ConsumerSettings::new(&metrics, config.intake.projector_group.clone(), vec![topics.events()]),
            Arc::new(projector::Projector::new(store.clone())),
            producer.clone(),
            &shutdown,
        );
        let intake_topic = consumer::spawn(
            "intake-topic",
            &config.kafka,
            ConsumerSettings::new(&metrics, "intake-requests", vec![topics.intake_requests()]),
            Arc::new(numbers::TopicIntake::new(registrar.clone())),
            producer.clone(),
            &shutdown,
        );
        let web = spawn_supervised("open311", &shutdown, {
            let shutdown = shutdown.clone();
            let metrics = metrics.clone();
            async move { open311::serve(http, front, metrics, shutdown).await.map_err(|e| Error::Config(format!("open311 http: {e}"))) }
        });
        let service = grpc::IntakeService::new(registrar, store, tokens);
        let (_health, health) = whistle_runtime::ops::grpc_health();
        let server = tonic::transport::Server::builder()
            .trace_fn(whistle_runtime::telemetry::grpc_span)
            .layer(metrics.grpc_layer())
            .add_service(health)
            .add_service(whistle_runtime::ops::grpc_reflection()?)
            .add_service(whistle_proto::v1::intake_server::IntakeServer::new(service))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), {
                let s = shutdown.clone();
                async move { s.wait().await }
            });
        let served = server.await;
        shutdown.trigger();
        drain(vec![projector, intake_topic, watch], Duration::from_secs(15)).await;
        drain(vec![web], Duration::from_secs(5)).await;
        drain(vec![ops], Duration::from_secs(5)).await;
        producer.flush(Duration::from_secs(5));
        served?;
        Ok(())
    }
}

async fn rebuild_if_lost(store: &TicketStore, kafka: &KafkaConfig, registrar: &Registrar) -> whistle_runtime::Result<()> {
    if !store.alive().await? {
        let started = std::time::Instant::now();
        let events = store.rebuild(kafka, &registrar.days_in_flight()).await?;
        tracing::info!(events, ms = started.elapsed().as_millis() as u64, "ticket projection rebuilt from kafka");
    }
    Ok(())
}

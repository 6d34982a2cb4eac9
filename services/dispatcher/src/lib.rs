//! Dispatcher: one running instance per command platform (`city`,
//! `county:<code>`, `street:<code>`). The city platform routes every
//! classified ticket to the responsible unit from the city's routing table,
//! with a deadline from the deadline policy and working-day calendar, and
//! publishes `dispatched`. Its desk API (gRPC) lets units report completion.

pub use whistle_runtime::auth;
mod desk;
mod hot;
pub mod routing;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use whistle_domain::{Clock, DeadlinePolicy, PlatformId, SystemClock};
pub use whistle_runtime::config::{CalendarSettings, CitySettings};
use whistle_runtime::consumer::{self, ConsumerSettings};
use whistle_runtime::ops::OpsServer;
use whistle_runtime::shutdown::drain;
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Shutdown, TelemetryConfig, TicketStore, Topics};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub city: CitySettings,
    pub dispatcher: DispatcherSettings,
    pub policy: DeadlinePolicy,
    pub calendar: CalendarSettings,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["dispatcher"];

    fn check(&self) -> whistle_runtime::Result<()> {
        self.city.offset()?;
        whistle_runtime::config::in_range("policy.warning_share", self.policy.warning_share, 0.0..1.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherSettings {
    /// city, county:<code> or street:<code>.
    pub platform: String,
    /// Desk gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Consumer group; the platform is appended, so instances of one
    /// platform share the work and platforms do not.
    pub group: String,
    /// Desk tokens, hashed: `{ caller = "unit:city-water", sha256 = "<hex>" }`.
    pub tokens: Vec<auth::TokenEntry>,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`);
    /// each instance on a machine needs its own port.
    pub ops_listen: SocketAddr,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        DispatcherSettings {
            platform: "city".into(),
            listen: ([127, 0, 0, 1], 50052).into(),
            group: "dispatcher".into(),
            tokens: Vec::new(),
            ops_listen: ([127, 0, 0, 1], 9183).into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Dispatcher {
    config: Config,
    platform: PlatformId,
    listener: TcpListener,
    router: Arc<routing::Router>,
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    tokens: auth::Tokens,
    ops: OpsServer,
}

impl Dispatcher {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let platform = PlatformId::parse(&config.dispatcher.platform).map_err(|e| Error::Config(format!("dispatcher.{e}")))?;
        let calendar = config.city.calendar(&config.calendar)?;
        let tokens = auth::Tokens::new("dispatcher.tokens", &config.dispatcher.tokens)?;
        let city = config.city.load()?;
        if !city.has_platform(&platform) {
            return Err(Error::Config(format!("dispatcher.platform: {platform} is not in the city file {}", config.city.file.display())));
        }
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let store = TicketStore::connect(&config.redis).await?;
        let city = Arc::new(city);
        let router = Arc::new(routing::Router::new(
            platform.clone(),
            city,
            config.policy.clone(),
            calendar,
            producer.clone(),
            store.clone(),
            clock.clone(),
        ));
        let addr = config.dispatcher.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let ops = OpsServer::for_service("dispatcher", config.dispatcher.ops_listen, store.redis(), &producer).await?;
        Ok(Dispatcher { config, platform, listener, router, store, producer, clock, tokens, ops })
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.dispatcher.listen)
    }

    pub fn platform(&self) -> &PlatformId {
        &self.platform
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let Dispatcher { config, platform, listener, router, store, producer, clock, tokens, ops } = self;
        let metrics = ops.ops().clone();
        let ops = ops.spawn(&shutdown);
        let topics = Topics::new(&config.kafka);
        let group = format!("{}-{}", config.dispatcher.group, platform.to_string().replace(':', "-"));
        let routing = consumer::spawn(
            "routing",
            &config.kafka,
            ConsumerSettings::new(&metrics, group, vec![topics.events()]),
            router.clone(),
            producer.clone(),
            &shutdown,
        );
        let desk = desk::DeskService::new(platform, store, producer.clone(), clock, tokens, router.clone(), shutdown.clone());
        let (_health, health) = whistle_runtime::ops::grpc_health();
        let served = tonic::transport::Server::builder()
            .trace_fn(whistle_runtime::telemetry::grpc_span)
            .layer(metrics.grpc_layer())
            .add_service(health)
            .add_service(whistle_runtime::ops::grpc_reflection()?)
            .add_service(whistle_proto::v1::desk_server::DeskServer::new(desk))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), {
                let s = shutdown.clone();
                async move { s.wait().await }
            })
            .await;
        shutdown.trigger();
        drain(vec![routing, ops], Duration::from_secs(15)).await;
        producer.flush(Duration::from_secs(5));
        Ok(served?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_local_config_loads_with_its_holiday_calendar() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/whistle.toml");
        let config: Config = whistle_runtime::config::load_service(Some(&file)).unwrap();
        let cal = config.city.calendar(&config.calendar).unwrap();
        assert!(!cal.is_working_day(time::macros::date!(2026 - 10 - 05)), "National Day");
        assert!(cal.is_working_day(time::macros::date!(2026 - 10 - 10)), "make-up Saturday");
        assert!(!cal.is_working_day(time::macros::date!(2027 - 10 - 01)));
        assert_eq!(config.policy, DeadlinePolicy::default(), "the file spells out the default policy");
        assert_eq!(config.dispatcher.platform, "city");
        auth::Tokens::new("dispatcher.tokens", &config.dispatcher.tokens).unwrap();
    }
}

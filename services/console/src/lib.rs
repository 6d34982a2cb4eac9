//! The command center's console: web pages for the platform desks and the
//! responsible units. It holds no ticket state of its own: every page and
//! every action is a call to a platform's Desk (or revisit's Figures) with
//! the signed-in operator's token, so it shows and does exactly what that
//! token may. Pages are rendered on the server; the one script (served by
//! this binary, like the stylesheet) keeps the queue live over server-sent
//! events and works without any CDN.

mod backend;
mod figures;
mod hot;
pub mod i18n;
mod intake;
mod map;
mod pages;
mod queue;
pub mod session;
mod ticket;
mod web;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use whistle_domain::{Clock, SystemClock};
use whistle_runtime::config::CitySettings;
use whistle_runtime::ops::{Ops, OpsServer};
use whistle_runtime::shutdown::drain;
use whistle_runtime::{RedisConfig, Shutdown, TelemetryConfig};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// Unit and place names, the platforms' units, the city's time.
    pub city: CitySettings,
    pub console: ConsoleSettings,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["console"];

    fn check(&self) -> whistle_runtime::Result<()> {
        self.city.offset()?;
        whistle_runtime::config::in_range("console.session_hours", self.console.session_hours, 1..=24 * 7)?;
        if self.console.desks.is_empty() {
            return Err(whistle_runtime::Error::Config(
                "console.desks: name at least one platform's desk (city = \"http://127.0.0.1:50052\")".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleSettings {
    /// HTTP listen address; port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// Each platform's desk: `city = "http://127.0.0.1:50052"`,
    /// `"county:xicheng" = "http://..."`. Sign-in asks them in turn.
    pub desks: BTreeMap<String, String>,
    /// The revisit service's gRPC URL (the figures).
    pub revisit: String,
    /// Intake's gRPC URL: the intake desk registers calls there.
    pub intake: String,
    /// The classifier's gRPC URL: the intake desk's preview.
    pub classifier: String,
    /// How long a sign-in lasts.
    pub session_hours: u64,
    /// Set the cookies' `Secure` flag: on whenever the console is reached
    /// over HTTPS (through an ingress), as in production.
    pub secure_cookies: bool,
    /// Metrics, health and readiness.
    pub ops_listen: SocketAddr,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            http_listen: ([127, 0, 0, 1], 8040).into(),
            desks: BTreeMap::from([("city".to_owned(), "http://127.0.0.1:50052".to_owned())]),
            revisit: "http://127.0.0.1:50056".into(),
            intake: "http://127.0.0.1:50051".into(),
            classifier: "http://127.0.0.1:50057".into(),
            session_hours: 10,
            secure_cookies: false,
            ops_listen: ([127, 0, 0, 1], 9189).into(),
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
    #[error("no desk is configured for platform {0} (console.desks)")]
    NoDesk(String),
    #[error("the token cannot be sent (printable ASCII only)")]
    BadToken,
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every request handler shares.
pub(crate) struct App {
    pub backends: backend::Backends,
    pub sessions: session::Sessions,
    pub texts: i18n::Texts,
    pub city: whistle_domain::city::City,
    pub offset: time::UtcOffset,
    pub clock: Arc<dyn Clock>,
    pub secure_cookies: bool,
    pub ops: Ops,
    pub shutdown: Shutdown,
}

pub struct Console {
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    redis: redis::aio::ConnectionManager,
    ops: OpsServer,
}

impl Console {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        config.city.load()?;
        let redis = whistle_runtime::redis_client::connect(&config.redis).await?;
        let addr = config.console.http_listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let ops = Ops::new("console");
        ops.check_redis(redis.clone());
        let ops = OpsServer::bind(config.console.ops_listen, ops).await?;
        Ok(Console { listener, config, clock, redis, ops })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.console.http_listen)
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let Console { listener, config, clock, redis, ops } = self;
        let metrics = ops.ops().clone();
        let ops = ops.spawn(&shutdown);
        let app = Arc::new(App {
            backends: backend::Backends::new(&config.console)?,
            sessions: session::Sessions::new(redis, &config.redis.key_prefix, config.console.session_hours * 3600),
            texts: i18n::Texts::builtin().map_err(Error::Config)?,
            city: config.city.load()?,
            offset: config.city.offset()?,
            clock,
            secure_cookies: config.console.secure_cookies,
            ops: metrics.clone(),
            shutdown: shutdown.clone(),
        });
        let router = web::router(app, metrics);
        let stop = shutdown.clone();
        let served = axum::serve(listener, router).with_graceful_shutdown(async move { stop.wait().await }).await;
        shutdown.trigger();
        drain(vec![ops], Duration::from_secs(5)).await;
        served.map_err(Error::Serve)
    }
}

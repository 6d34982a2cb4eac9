//! Revisit ("really done, really closed"): every ticket a unit reports
//! completed is revisited. The follower turns `completed` into a task due
//! within the revisit span; agents list, claim and record over gRPC;
//! citizens answer by SMS reply or a signed link over HTTP. Satisfied closes
//! the ticket, unsatisfied reopens it at the same unit with the rework
//! deadline and the citizen's reason, unreachable is tried again on another
//! working day and closed as unreachable after the last try. The figures of
//! any period are folded from the events topic.

pub mod figures;
mod follow;
mod grpc;
mod http;
mod rules;
pub mod tally;
pub mod tasks;

use follow::Follow;
pub use rules::{Answerer, Core, Next, Recorded};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use whistle_domain::revisit::RevisitPolicy;
use whistle_domain::{Clock, DeadlinePolicy, SystemClock};
use whistle_runtime::auth::TokenEntry;
use whistle_runtime::config::CalendarSettings;
use whistle_runtime::consumer::{self, ConsumerSettings};
use whistle_runtime::ops::OpsServer;
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{KafkaConfig, RedisConfig, Secret, Shutdown, TelemetryConfig, TicketStore, Topics};

pub use tasks::{TaskRecord, Tasks};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// The city's time, for the revisit's working days.
    pub city: whistle_runtime::config::CitySettings,
    /// For the rework deadline (`policy.rework`).
    pub policy: DeadlinePolicy,
    pub calendar: CalendarSettings,
    pub revisit: RevisitSettings,
    pub deployment: whistle_runtime::config::Deployment,
}

impl whistle_runtime::config::ServiceConfig for Config {
    const OWNS: &'static [&'static str] = &["revisit"];

    fn check(&self) -> whistle_runtime::Result<()> {
        use whistle_runtime::config::in_range;
        self.city.offset()?;
        in_range("policy.warning_share", self.policy.warning_share, 0.0..1.0)?;
        in_range("revisit.claim_minutes", self.revisit.claim_minutes, 1..)?;
        in_range("revisit.rules.max_attempts", self.revisit.rules.max_attempts, 1..)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RevisitSettings {
    /// gRPC listen address (agents' queue, figures); port 0 picks one.
    pub listen: SocketAddr,
    /// HTTP listen address (SMS replies, signed links).
    pub http_listen: SocketAddr,
    pub group: String,
    /// Due within, tries, spacing of tries.
    pub rules: RevisitPolicy,
    /// How long an agent's claim keeps others off a ticket.
    pub claim_minutes: u64,
    /// Key of the signed revisit links (the notifier holds the same).
    pub link_secret: Secret<String>,
    /// Where citizens open their links (`<public_url>/r/<token>`): this
    /// service's `http_listen` as the outside world reaches it.
    pub public_url: String,
    /// If set, the SMS gateway must send `Authorization: Bearer <this>`.
    pub sms_reply_token: Option<Secret<String>>,
    /// Agents' tokens, hashed: `{ caller = "agent:wang", sha256 = "<hex>" }`;
    /// desk tokens (`city`, `unit:...`) may read the figures.
    pub tokens: Vec<TokenEntry>,
    /// Metrics, health and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub ops_listen: SocketAddr,
}

impl Default for RevisitSettings {
    fn default() -> Self {
        // The link's defaults are the shared section's, said once.
        let link = whistle_runtime::config::RevisitLink::default();
        RevisitSettings {
            listen: ([127, 0, 0, 1], 50056).into(),
            http_listen: ([127, 0, 0, 1], 8026).into(),
            group: "revisit".into(),
            rules: RevisitPolicy::default(),
            claim_minutes: 30,
            link_secret: link.link_secret,
            public_url: link.public_url,
            sms_reply_token: None,
            tokens: Vec::new(),
            ops_listen: ([127, 0, 0, 1], 9186).into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Revisit {
    config: Config,
    core: Arc<Core>,
    grpc: TcpListener,
    http: TcpListener,
    tokens: whistle_runtime::auth::Tokens,
    ops: OpsServer,
}

impl Revisit {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let calendar = config.city.calendar(&config.calendar)?;
        let tokens = whistle_runtime::auth::Tokens::new("revisit.tokens", &config.revisit.tokens)?;
        if config.revisit.rules.max_attempts == 0 {
            return Err(Error::Config("revisit.rules.max_attempts: must be at least 1".into()));
        }
        if config.revisit.link_secret.expose().len() < 16 {
            return Err(Error::Config("revisit.link_secret: use at least 16 characters".into()));
        }
        let d = &config.deployment;
        d.require_secret("revisit.link_secret", Some(&config.revisit.link_secret))?;
        d.require_secret("revisit.sms_reply_token", config.revisit.sms_reply_token.as_ref())?;
        let producer = whistle_runtime::topics::ready(&config.kafka).await?;
        let store = TicketStore::connect(&config.redis).await?;
        let ops = OpsServer::for_service("revisit", config.revisit.ops_listen, store.redis(), &producer).await?;
        let tasks = Tasks::new(store.redis(), store.prefix());
        let tally = tally::Tally::new(
            store.redis(),
            store.prefix(),
            calendar.offset(),
            config.kafka.clone(),
            format!("{}-figures", config.revisit.group),
        );
        let core = Arc::new(Core {
            tasks,
            store,
            producer,
            clock,
            rules: config.revisit.rules.clone(),
            deadlines: config.policy.clone(),
            calendar,
            kafka: config.kafka.clone(),
            claim_ms: config.revisit.claim_minutes.max(1) * 60_000,
            link_secret: config.revisit.link_secret.expose().as_bytes().to_vec(),
            tally,
            shutdown: Shutdown::new(),
        });
        let bind = |addr: SocketAddr| async move { TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source }) };
        let grpc = bind(config.revisit.listen).await?;
        let http = bind(config.revisit.http_listen).await?;
        Ok(Revisit { config, core, grpc, http, tokens, ops })
    }

    /// Where metrics, health and readiness are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.revisit.listen)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.revisit.http_listen)
    }

    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let Revisit { config, core, grpc, http, tokens, ops } = self;
        let metrics = ops.ops().clone();
        let ops = ops.spawn(&shutdown);
        let (retries, stopping) = (core.shutdown.clone(), shutdown.clone());
        tokio::spawn(async move {
            stopping.wait().await;
            retries.trigger();
        });
        let topics = Topics::new(&config.kafka);
        // A queue lost in Redis comes back from the topic before agents read it.
        core.restore().await?;
        let watch = spawn_supervised("revisit-watch", &shutdown, core.clone().watch(Duration::from_secs(2), shutdown.clone()));
        let follow = consumer::spawn(
            "revisit-follow",
            &config.kafka,
            ConsumerSettings::new(&metrics, config.revisit.group.clone(), vec![topics.events()]),
            Arc::new(Follow { core: core.clone() }),
            core.producer.clone(),
            &shutdown,
        );
        let tally = consumer::spawn(
            "revisit-tally",
            &config.kafka,
            ConsumerSettings {
                service: "revisit-figures",
                ..ConsumerSettings::new(&metrics, core.tally.group().to_owned(), vec![topics.events()])
            },
            Arc::new(core.tally.clone()),
            core.producer.clone(),
            &shutdown,
        );
        let web = spawn_supervised(
            "revisit-http",
            &shutdown,
            http::serve(http, core.clone(), config.revisit.sms_reply_token.clone(), metrics.clone(), shutdown.clone()),
        );
        let (_health, health) = whistle_runtime::ops::grpc_health();
        let served = tonic::transport::Server::builder()
            .trace_fn(whistle_runtime::telemetry::grpc_span)
            .layer(metrics.grpc_layer())
            .add_service(health)
            .add_service(whistle_runtime::ops::grpc_reflection()?)
            .add_service(whistle_proto::v1::revisit_server::RevisitServer::new(grpc::RevisitService::new(core.clone(), tokens)))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), {
                let s = shutdown.clone();
                async move { s.wait().await }
            })
            .await;
        shutdown.trigger();
        drain(vec![follow, tally, ops], Duration::from_secs(15)).await;
        drain(vec![watch], Duration::from_secs(5)).await;
        drain(vec![web], Duration::from_secs(5)).await;
        core.producer.flush(Duration::from_secs(5));
        Ok(served?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_local_config_loads() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/whistle.toml");
        let config: Config = whistle_runtime::config::load_service(Some(&file)).unwrap();
        assert_eq!(config.revisit.rules, RevisitPolicy::default(), "the file spells out the default rules");
        let tokens = whistle_runtime::auth::Tokens::new("revisit.tokens", &config.revisit.tokens).unwrap();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("authorization", "Bearer demo-agent".parse().unwrap());
        assert_eq!(tokens.caller(&md).unwrap(), whistle_domain::access::Caller::Agent("demo".into()));
        assert!(config.revisit.link_secret.expose().len() >= 16);
        assert_eq!(config.revisit.listen.port(), 50056);
        assert_eq!(config.deployment.profile, whistle_runtime::config::Profile::Local, "the shipped file is the local one");
    }

    #[tokio::test]
    async fn shipped_secrets_refuse_to_start_outside_the_local_profile() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/whistle.toml");
        let mut config: Config = whistle_runtime::config::load(Some(&file)).unwrap();
        config.deployment.profile = whistle_runtime::config::Profile::Production;
        let e = Revisit::build(config.clone()).await.err().expect("refused");
        assert!(e.to_string().contains("revisit.link_secret: this is the secret shipped with Whistle"), "{e}");
        config.revisit.link_secret = Secret::new("a-real-link-secret-from-a-vault".into());
        config.revisit.sms_reply_token = None;
        let e = Revisit::build(config).await.err().expect("refused");
        assert!(e.to_string().contains("revisit.sms_reply_token: required outside the local profile"), "{e}");
    }
}

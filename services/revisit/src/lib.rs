//! Revisit ("really done, really closed"): every ticket a unit reports
//! completed is revisited. The follower turns `completed` into a task due
//! within the revisit span; agents list, claim and record over gRPC;
//! citizens answer by SMS reply or a signed link over HTTP. Satisfied closes
//! the ticket, unsatisfied reopens it at the same unit with the rework
//! deadline and the citizen's reason, unreachable is tried again on another
//! working day and closed as unreachable after the last try. The figures of
//! any period are folded from the events topic.

pub mod figures;
mod grpc;
mod http;
pub mod tally;
pub mod tasks;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use whistle_domain::revisit::{RevisitPolicy, RevisitTask};
use whistle_domain::{
    Actor, Clock, DeadlinePolicy, Event, EventId, EventKind, ReasonText, Resolution, RevisitOutcome, SystemClock, TicketId, TicketState,
    WorkCalendar,
};
use whistle_runtime::auth::TokenEntry;
use whistle_runtime::config::CalendarSettings;
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::retry::{GaveUp, Retry};
use whistle_runtime::shutdown::{drain, spawn_supervised};
use whistle_runtime::{EventProducer, KafkaConfig, RedisConfig, Secret, Shutdown, TelemetryConfig, TicketStore, Topics};

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

/// Who answered the revisit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answerer {
    Agent(String),
    /// By SMS reply or the signed link.
    Citizen,
}

/// What became of the ticket after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Closed(Resolution),
    Reopened { due_at: time::OffsetDateTime },
    Retry { due_at: time::OffsetDateTime },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub ticket_id: TicketId,
    pub number: String,
    pub attempts: u32,
    pub next: Next,
}

/// The revisit rules at work, shared by the gRPC and HTTP fronts and the follower.
pub struct Core {
    tasks: Tasks,
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    rules: RevisitPolicy,
    deadlines: DeadlinePolicy,
    calendar: WorkCalendar,
    kafka: KafkaConfig,
    claim_ms: u64,
    link_secret: Vec<u8>,
    tally: tally::Tally,
    /// Fired when the service stops: no retry waits through it.
    shutdown: Shutdown,
}

impl Core {
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn max_attempts(&self) -> u32 {
        self.rules.max_attempts
    }

    /// The ticket id of a number or id, if the ticket exists.
    pub async fn resolve(&self, ticket: &str) -> Result<TicketId> {
        if let Ok(id) = TicketId::parse(ticket) {
            return Ok(id);
        }
        match self.store.find(ticket).await? {
            Some(p) => Ok(p.ticket.id),
            None => Err(Error::NotFound(format!("no ticket {ticket:?}"))),
        }
    }

    /// Records one revisit attempt and publishes what follows from it.
    pub async fn record(&self, ticket: &TicketId, outcome: RevisitOutcome, reason: &str, by: &Answerer) -> Result<Recorded> {
        let task = self.tasks.get(ticket).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "ticket {ticket} has no revisit waiting (not completed yet, already closed, or just completed: try again)"
            ))
        })?;
        if let Answerer::Agent(agent) = by
            && let Some(claim) = self.tasks.claim_of(ticket).await?
            && claim.agent != *agent
        {
            return Err(Error::Conflict(format!(
                "ticket {} is claimed by agent {} for {} s more",
                task.number,
                claim.agent,
                claim.remaining_ms / 1000
            )));
        }
        // An agent is told what is wrong with the reason; a citizen's answer is taken as it came.
        let reason: String = match (outcome, by) {
            (RevisitOutcome::Unsatisfied, Answerer::Agent(_)) => ReasonText::parse("reason", reason)
                .map_err(|e| Error::Invalid(format!("an unsatisfied answer needs the citizen's reason: {e}")))?
                .into(),
            (_, Answerer::Agent(_)) => ReasonText::optional("reason", reason).map_err(|e| Error::Invalid(e.to_string()))?.into(),
            (RevisitOutcome::Unsatisfied, Answerer::Citizen) => {
                let said = ReasonText::from_citizen(reason);
                if said.is_empty() { ReasonText::CITIZEN_UNSATISFIED.to_owned() } else { said.into() }
            }
            (_, Answerer::Citizen) => ReasonText::from_citizen(reason).into(),
        };
        let now = self.clock.now();
        let mut state = RevisitTask::Due { due_at: task.due_at, attempts: task.attempts };
        let closing = state.record(outcome, now, &self.rules, &self.calendar).map_err(|e| Error::Invalid(e.to_string()))?;
        if !self.tasks.fence(ticket, task.round, task.attempts).await? {
            return Err(Error::Conflict(format!("this revisit attempt of ticket {} was just recorded", task.number)));
        }
        let actor = match by {
            Answerer::Agent(a) => Actor::agent(a),
            Answerer::Citizen => Actor::citizen(),
        };
        let event = |id: EventId, kind: EventKind| Event { id, ticket_id: *ticket, occurred_at: now, actor: actor.clone(), kind };
        let mut events = vec![event(EventId::new(), EventKind::RevisitRecorded { outcome, reason: reason.clone() })];
        let next = match (closing, &state) {
            (Some(EventKind::Closed { resolution }), _) => {
                events.push(event(EventId::new(), EventKind::Closed { resolution }));
                Next::Closed(resolution)
            }
            (_, RevisitTask::Due { due_at, .. }) => Next::Retry { due_at: *due_at },
            (_, RevisitTask::Finished { .. }) => {
                let id = EventId::new();
                let deadline = self.deadlines.rework(&self.calendar, now, id);
                events.push(event(id, EventKind::Reopened { reason: reason.clone(), deadline }));
                Next::Reopened { due_at: deadline.due_at }
            }
        };
        let (first, rest) = events.split_first().expect("the attempt itself");
        if let Err(err) = self.producer.publish(first).await {
            // Nothing was recorded: the attempt may be made again.
            self.tasks.release_fence(ticket, task.round, task.attempts).await?;
            return Err(Error::Unavailable(format!("could not record the revisit of ticket {}: {err}", task.number)));
        }
        // The attempt is on record; what follows from it (closed, reopened)
        // must follow it, so it is tried until the broker takes it.
        for e in rest {
            let published = Retry::CONSUMER
                .limited(20)
                .run(
                    &self.shutdown,
                    |_| self.producer.publish(e),
                    |_| false,
                    |attempt, err, _| {
                        tracing::warn!(ticket = %ticket, event = e.kind.name(), attempt, error = %err, "publishing failed; retrying");
                    },
                )
                .await;
            if let Err(gave_up) = published {
                let err = match gave_up {
                    GaveUp::Failed { error, .. } => error.to_string(),
                    GaveUp::ShuttingDown(_) => "the service is stopping".to_owned(),
                };
                tracing::error!(ticket = %ticket, event = e.kind.name(), error = %err, "revisit recorded but its consequence could not be published");
                return Err(Error::Unavailable(format!(
                    "the revisit of ticket {} is recorded but its {} is not: {err}",
                    task.number,
                    e.kind.name()
                )));
            }
        }
        let attempts = task.attempts + 1;
        match next {
            Next::Retry { due_at } => self.tasks.upsert(&TaskRecord { due_at, attempts, ..task.clone() }).await?,
            Next::Closed(_) | Next::Reopened { .. } => self.tasks.remove(ticket).await?,
        }
        tracing::info!(ticket = %ticket, outcome = outcome.as_str(), attempts, next = ?next, "revisit recorded");
        Ok(Recorded { ticket_id: *ticket, number: task.number, attempts, next })
    }
}

/// Follows the events topic: `completed` opens a task, an unreachable try
/// moves it to another day, `reopened` and `closed` end it.
struct Follow {
    core: Arc<Core>,
}

impl Handler for Follow {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let core = &self.core;
        let due_at = match &event.kind {
            EventKind::Completed { .. } => core.rules.first_due(event.occurred_at, &core.calendar),
            EventKind::RevisitRecorded { outcome: RevisitOutcome::Unreachable, .. } => {
                core.rules.retry_at(event.occurred_at, &core.calendar)
            }
            EventKind::Reopened { .. } | EventKind::Closed { .. } => {
                core.tasks.remove(&event.ticket_id).await?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let p = core.store.projection_at(&event.ticket_id, msg.offset).await?;
        match task_for(&p.ticket, due_at) {
            Some(rec) => core.tasks.upsert(&rec).await?,
            // Already past the revisit (a replay): nothing waits.
            None => core.tasks.remove(&p.ticket.id).await?,
        }
        Ok(())
    }
}

/// The revisit task of a ticket waiting for its revisit (state completed).
fn task_for(t: &whistle_domain::Ticket, due_at: time::OffsetDateTime) -> Option<TaskRecord> {
    let TicketState::Completed { assignment, result, revisit_attempts } = &t.state else { return None };
    Some(TaskRecord {
        ticket_id: t.id,
        number: t.number.to_string(),
        unit: assignment.unit.clone(),
        platform: assignment.platform.clone(),
        category: t.classification.as_ref().map_or("other", |c| c.category.as_str()).to_owned(),
        language: t.request.language.as_str().to_owned(),
        result: result.clone(),
        request_text: t.request.text.clone(),
        phone: t.request.contact.phone.as_ref().map(|p| p.expose().to_owned()),
        due_at,
        attempts: *revisit_attempts,
        round: t.rework_count,
    })
}

impl Core {
    fn alive_key(&self) -> String {
        format!("{}revisit:alive", self.store.prefix())
    }

    /// False when Redis lost the revisit queue (flushed, restarted empty).
    pub async fn alive(&self) -> Result<bool> {
        Ok(redis::AsyncCommands::exists(&mut self.store.redis(), self.alive_key()).await.map_err(whistle_runtime::Error::from)?)
    }

    /// Rebuilds the revisit queue from the events topic: every ticket whose
    /// events leave it completed gets its task back, due from its completion
    /// or its last unreachable try. Returns how many tasks it wrote.
    pub async fn rebuild(&self) -> Result<usize> {
        let kafka = self.kafka.clone();
        let waiting = tokio::task::spawn_blocking(move || {
            let mut tickets: std::collections::HashMap<TicketId, (whistle_domain::Ticket, time::OffsetDateTime, bool)> = Default::default();
            let topic = Topics::new(&kafka).events();
            whistle_runtime::kafka::scan_topic(&kafka, &topic, |m| {
                let Ok(e) = whistle_proto::decode_event(&m.payload) else { return };
                if let EventKind::Received { .. } = e.kind {
                    if let Ok(t) = whistle_domain::Ticket::open(&e) {
                        tickets.entry(e.ticket_id).or_insert((t, e.occurred_at, false));
                    }
                    return;
                }
                let Some((t, at, retry)) = tickets.get_mut(&e.ticket_id) else { return };
                // Refused transitions are skipped, as the projection does.
                if t.apply(&e).is_ok() {
                    match e.kind {
                        EventKind::Completed { .. } => (*at, *retry) = (e.occurred_at, false),
                        EventKind::RevisitRecorded { outcome: RevisitOutcome::Unreachable, .. } => (*at, *retry) = (e.occurred_at, true),
                        _ => {}
                    }
                }
            })?;
            Ok::<_, whistle_runtime::Error>(
                tickets.into_values().filter(|(t, _, _)| matches!(t.state, TicketState::Completed { .. })).collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|e| Error::Unavailable(format!("revisit rebuild task: {e}")))??;
        for (t, at, retry) in &waiting {
            let due = if *retry { self.rules.retry_at(*at, &self.calendar) } else { self.rules.first_due(*at, &self.calendar) };
            if let Some(rec) = task_for(t, due) {
                self.tasks.upsert(&rec).await?;
            }
        }
        let _: () = redis::AsyncCommands::set(&mut self.store.redis(), self.alive_key(), 1).await.map_err(whistle_runtime::Error::from)?;
        Ok(waiting.len())
    }

    /// Rebuilds when the queue was lost: at start, and whenever the marker disappears.
    async fn watch(self: Arc<Self>, every: Duration, shutdown: Shutdown) -> Result<()> {
        loop {
            if !self.alive().await? {
                let n = self.rebuild().await?;
                tracing::warn!(tasks = n, "revisit queue was missing in Redis; rebuilt from the events topic");
            }
            if !self.tally.alive().await? {
                let n = self.tally.rebuild().await?;
                tracing::warn!(events = n, "figures' daily tallies were missing in Redis; rebuilt from the events topic");
            }
            if !whistle_runtime::shutdown::sleep_or_shutdown(every, &shutdown).await {
                return Ok(());
            }
        }
    }
}

pub struct Revisit {
    config: Config,
    core: Arc<Core>,
    grpc: TcpListener,
    http: TcpListener,
    tokens: whistle_runtime::auth::Tokens,
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
        whistle_runtime::topics::prepare(&config.kafka).await?;
        let store = TicketStore::connect(&config.redis).await?;
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
            producer: EventProducer::new(&config.kafka)?,
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
        Ok(Revisit { config, core, grpc, http, tokens })
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
        let Revisit { config, core, grpc, http, tokens } = self;
        let (retries, stopping) = (core.shutdown.clone(), shutdown.clone());
        tokio::spawn(async move {
            stopping.wait().await;
            retries.trigger();
        });
        let topics = Topics::new(&config.kafka);
        // A queue lost in Redis comes back from the topic before agents read it.
        if !core.alive().await? {
            let n = core.rebuild().await?;
            tracing::info!(tasks = n, "revisit queue rebuilt from the events topic");
        }
        if !core.tally.alive().await? {
            let n = core.tally.rebuild().await?;
            tracing::info!(events = n, "figures' daily tallies rebuilt from the events topic");
        }
        let watch = spawn_supervised("revisit-watch", &shutdown, core.clone().watch(Duration::from_secs(2), shutdown.clone()));
        let follow = consumer::spawn(
            "revisit-follow",
            &config.kafka,
            ConsumerSettings::new("revisit", config.revisit.group.clone(), vec![topics.events()]),
            Arc::new(Follow { core: core.clone() }),
            core.producer.clone(),
            &shutdown,
        );
        let tally = consumer::spawn(
            "revisit-tally",
            &config.kafka,
            ConsumerSettings::new("revisit-figures", core.tally.group().to_owned(), vec![topics.events()]),
            Arc::new(core.tally.clone()),
            core.producer.clone(),
            &shutdown,
        );
        let web = spawn_supervised(
            "revisit-http",
            &shutdown,
            http::serve(http, core.clone(), config.revisit.sms_reply_token.clone(), shutdown.clone()),
        );
        let served = tonic::transport::Server::builder()
            .trace_fn(whistle_runtime::telemetry::grpc_span)
            .add_service(whistle_proto::v1::revisit_server::RevisitServer::new(grpc::RevisitService::new(core.clone(), tokens)))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), {
                let s = shutdown.clone();
                async move { s.wait().await }
            })
            .await;
        shutdown.trigger();
        drain(vec![follow, tally], Duration::from_secs(15)).await;
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
        let config: Config = whistle_runtime::config::load_checked(Some(&file), &["revisit"]).unwrap();
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

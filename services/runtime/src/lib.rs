//! Runtime plumbing shared by every Whistle service, one job per module:
//! layered config, telemetry and trace propagation, process shutdown, the
//! Kafka producer and the consumer loop (manual commits, dead letters), the
//! topics the project creates, Redis, and the ticket projection in Redis.

pub mod auth;
pub mod city;
pub mod config;
pub mod consumer;
pub mod kafka;
pub mod marker;
pub mod ops;
pub mod redact;
pub mod redis_client;
pub mod retry;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod topics;

pub use config::{KafkaConfig, RedisConfig, Secret, TelemetryConfig};
pub use consumer::{HandleError, Handler, Incoming};
pub use kafka::EventProducer;
pub use ops::Ops;
pub use shutdown::Shutdown;
pub use store::TicketStore;
pub use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka admin: topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("stored ticket {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("shutting down")]
    ShuttingDown,
    /// What is asked is not there for now (the ticket projection is being
    /// rebuilt): later it will be.
    #[error("{0}")]
    Unavailable(String),
    /// A spawned task did not finish: it panicked or was cancelled.
    #[error("task {what}: {reason}")]
    Task { what: &'static str, reason: String, cancelled: bool },
}

impl Error {
    /// A task that failed to join, named by what it was doing.
    pub fn task(what: &'static str, e: tokio::task::JoinError) -> Self {
        Error::Task { what, reason: e.to_string(), cancelled: e.is_cancelled() }
    }

    /// Whether doing the same again later may work. The data is at fault
    /// (it does not decode, a stored record is corrupt or of the wrong
    /// shape, a message is too big for the broker, a task panicked on it):
    /// no. Anything else (the broker or Redis unreachable, busy or failing
    /// over, a wrong setting an operator will fix, the service stopping):
    /// yes, so the work waits instead of being dead-lettered.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kafka(_) => !self.is_too_big(),
            Error::Redis(e) => !matches!(e.kind(), redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType),
            Error::Task { cancelled, .. } => *cancelled,
            Error::Json(_) | Error::Corrupt(..) => false,
            Error::Config(_) | Error::Topic { .. } | Error::Telemetry(_) | Error::ShuttingDown | Error::Unavailable(_) => true,
        }
    }

    /// The broker or the producer refused a message for its size: sending
    /// it again will never work.
    pub fn is_too_big(&self) -> bool {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
        matches!(
            self,
            Error::Kafka(KafkaError::MessageProduction(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge))
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Runtime plumbing shared by every Whistle service, one job per module:
//! layered config, telemetry and trace propagation, process shutdown, the
//! Kafka producer and the consumer loop (manual commits, dead letters), the
//! topics the project creates, Redis, and the ticket projection in Redis.

pub mod auth;
pub mod city;
pub mod config;
pub mod consumer;
pub mod kafka;
pub mod redact;
pub mod redis_client;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod topics;

pub use config::{KafkaConfig, RedisConfig, Secret, TelemetryConfig};
pub use consumer::{HandleError, Handler, Incoming};
pub use kafka::EventProducer;
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
}

impl Error {
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

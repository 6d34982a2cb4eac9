//! The topics Whistle uses, in one place: names, partition counts, and their
//! creation (the project creates them; it never relies on auto-create).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::client_config;
use crate::{Error, KafkaConfig, Result};

/// Every ticket event, keyed by ticket id: the durable record.
pub const TICKET_EVENTS: &str = "ticket-events";
/// Messages that could not be processed, with the reason in headers.
pub const DEAD_LETTER: &str = "dead-letter";
/// Requests published by external systems (JSON), turned into tickets by intake.
pub const INTAKE_REQUESTS: &str = "intake-requests";

/// Name and partition count of every topic the project creates.
pub const ALL: &[(&str, i32)] = &[(TICKET_EVENTS, 6), (DEAD_LETTER, 1), (INTAKE_REQUESTS, 3)];

/// Topic names with the configured prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(cfg: &KafkaConfig) -> Self {
        Topics { prefix: cfg.topic_prefix.clone() }
    }

    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    pub fn events(&self) -> String {
        self.name(TICKET_EVENTS)
    }

    pub fn dead_letter(&self) -> String {
        self.name(DEAD_LETTER)
    }

    pub fn intake_requests(&self) -> String {
        self.name(INTAKE_REQUESTS)
    }
}

/// Creates every missing topic; existing ones are left as they are.
pub async fn ensure(cfg: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let topics = Topics::new(cfg);
    let names: Vec<String> = ALL.iter().map(|(n, _)| topics.name(n)).collect();
    let new: Vec<NewTopic<'_>> = ALL
        .iter()
        .zip(&names)
        .map(|((_, partitions), name)| NewTopic::new(name, *partitions, TopicReplication::Fixed(cfg.replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "topic created"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((topic, code)) => {
                return Err(Error::Topic { topic, reason: code.to_string() });
            }
        }
    }
    Ok(())
}

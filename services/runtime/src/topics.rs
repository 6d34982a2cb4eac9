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

/// What a topic needs: the events and the dead letters are the record and
/// are kept forever (every rebuild and every figure reads the events from
/// the start); the events are written to enough replicas before they count.
fn required(base: &str, cfg: &KafkaConfig) -> Vec<(&'static str, String)> {
    let forever = [("retention.ms", "-1".to_owned()), ("retention.bytes", "-1".to_owned())];
    match base {
        TICKET_EVENTS => forever.into_iter().chain([("min.insync.replicas", min_insync(cfg).to_string())]).collect(),
        DEAD_LETTER => forever.to_vec(),
        _ => Vec::new(),
    }
}

/// Two in-sync replicas where there are at least two (one broker locally).
fn min_insync(cfg: &KafkaConfig) -> i32 {
    cfg.replication.clamp(1, 2)
}

/// Every service's start on the broker: the topics prepared and checked
/// ([`prepare`]), then the producer it publishes with.
pub async fn ready(cfg: &KafkaConfig) -> Result<crate::EventProducer> {
    prepare(cfg).await?;
    crate::EventProducer::new(cfg)
}

/// Creates every missing topic with what it needs (when `create_topics` is
/// set), then checks that the record's topics keep their events forever
/// and ask for enough in-sync replicas; refuses to go on when they do not.
pub async fn prepare(cfg: &KafkaConfig) -> Result<()> {
    if cfg.create_topics {
        ensure(cfg).await?;
    }
    check(cfg).await
}

/// Creates every missing topic; existing ones are left as they are.
pub async fn ensure(cfg: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let topics = Topics::new(cfg);
    let names: Vec<String> = ALL.iter().map(|(n, _)| topics.name(n)).collect();
    let wanted: Vec<Vec<(&str, String)>> = ALL.iter().map(|(base, _)| required(base, cfg)).collect();
    let new: Vec<NewTopic<'_>> = ALL
        .iter()
        .zip(&names)
        .zip(&wanted)
        .map(|(((_, partitions), name), configs)| {
            configs.iter().fold(NewTopic::new(name, *partitions, TopicReplication::Fixed(cfg.replication)), |t, (k, v)| t.set(k, v))
        })
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

/// Checks the existing record topics' retention and in-sync replicas. A
/// broker that cannot describe topic configs is told in the log, not
/// trusted silently.
pub async fn check(cfg: &KafkaConfig) -> Result<()> {
    use rdkafka::admin::ResourceSpecifier;
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let topics = Topics::new(cfg);
    let opts = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(10)));
    for base in [TICKET_EVENTS, DEAD_LETTER] {
        let name = topics.name(base);
        let described = match admin.describe_configs(&[ResourceSpecifier::Topic(&name)], &opts).await {
            Ok(mut r) => r.pop(),
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "the broker cannot describe topic configs; retention not checked");
                continue;
            }
        };
        let resource = match described {
            Some(Ok(r)) => r,
            Some(Err(code)) => {
                tracing::warn!(topic = %name, %code, "the broker cannot describe topic configs; retention not checked");
                continue;
            }
            None => continue,
        };
        for (key, want) in required(base, cfg) {
            let have = resource.get(key).and_then(|e| e.value.clone());
            let ok = match (key, &have) {
                (_, None) => true,
                ("min.insync.replicas", Some(v)) => v.parse::<i32>().is_ok_and(|n| n >= want.parse::<i32>().unwrap_or(1)),
                (_, Some(v)) => *v == want,
            };
            if !ok {
                return Err(Error::Topic {
                    topic: name.clone(),
                    reason: format!(
                        "{key} is {} but must be {want}: the events are the record (rebuilds and figures read them from the start); \
                         set it with kafka-configs --alter --entity-type topics --entity-name {name} --add-config {key}={want}",
                        have.unwrap_or_default()
                    ),
                });
            }
        }
    }
    Ok(())
}

//! Classifier: consumes `received` events and publishes `classified` with the
//! category, urgency, whistle level and jurisdiction that the city's keyword
//! rules (the city file) give. Idempotent: the `classified` event id derives
//! from the `received` event id.

pub mod rules;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, SystemClock};
use whistle_runtime::consumer::{self, ConsumerSettings, HandleError, Handler, Incoming};
use whistle_runtime::{EventProducer, KafkaConfig, Shutdown, TelemetryConfig, Topics};

pub use rules::Rules;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
    pub classifier: ClassifierSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierSettings {
    /// The city file with the classification keywords and places.
    pub city_file: PathBuf,
    pub group: String,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        ClassifierSettings { city_file: "deploy/config/demo-city.toml".into(), group: "classifier".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] whistle_runtime::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Classifier {
    config: Config,
    handler: Arc<ClassifyHandler>,
    producer: EventProducer,
}

impl Classifier {
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let city = whistle_runtime::city::load(&config.classifier.city_file)?;
        if config.kafka.create_topics {
            whistle_runtime::topics::ensure(&config.kafka).await?;
        }
        let producer = EventProducer::new(&config.kafka)?;
        let handler = Arc::new(ClassifyHandler { rules: Rules::new(&city), producer: producer.clone(), clock });
        Ok(Classifier { config, handler, producer })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let topics = Topics::new(&self.config.kafka);
        let settings = ConsumerSettings::new("classifier", self.config.classifier.group.clone(), vec![topics.events()]);
        let r = consumer::run(self.config.kafka.clone(), settings, self.handler, self.producer.clone(), shutdown).await;
        self.producer.flush(Duration::from_secs(5));
        Ok(r?)
    }
}

struct ClassifyHandler {
    rules: Rules,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
}

impl Handler for ClassifyHandler {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let EventKind::Received { request, .. } = &event.kind else {
            return Ok(());
        };
        let o = self.rules.classify(&request.text, &request.location.address);
        tracing::info!(ticket = %event.ticket_id, category = %o.category, urgency = %o.urgency, street = o.jurisdiction.street.as_deref().unwrap_or(""), "classified");
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
            },
        };
        self.producer.publish(&out).await?;
        Ok(())
    }
}

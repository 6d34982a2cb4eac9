//! Configuration in layers: the service's defaults, then an optional TOML
//! file, then `WHISTLE__SECTION__KEY` environment variables. Every service
//! reads the same file and takes its own sections.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::{Error, Result};
use whistle_domain::WorkCalendar;
use whistle_domain::calendar::CalendarConfig;

/// Every top-level section a Whistle config file may have. Each service
/// reads some of them; one file serves them all.
pub const SECTIONS: &[&str] = &[
    "kafka",
    "redis",
    "telemetry",
    "deployment",
    "city",
    "calendar",
    "policy",
    "intake",
    "open311",
    "classifier",
    "dispatcher",
    "sla_timer",
    "notifier",
    "revisit",
    "console",
];

/// The sections of the shared plumbing: every service that reads one checks
/// it whole.
const SHARED: &[&str] = &["kafka", "redis", "telemetry", "deployment", "city", "calendar", "policy"];

fn figment<T: Serialize + Default>(file: Option<&Path>) -> Result<Figment> {
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(Error::Config(format!("config file {} does not exist", file.display())));
        }
        fig = fig.merge(Toml::file(file));
    }
    Ok(fig.merge(Env::prefixed("WHISTLE__").split("__")))
}

/// Loads `T` from defaults, the file (if given) and the environment.
pub fn load<T: Serialize + DeserializeOwned + Default>(file: Option<&Path>) -> Result<T> {
    figment::<T>(file)?.extract().map_err(|e| Error::Config(e.to_string()))
}

/// Loads like [`load`] and refuses what cannot be a setting, naming it: a
/// section no service has, or a key `T` does not know in one of the shared
/// sections or of the service's own (`owns`, e.g. `["intake", "open311"]`).
/// Keys of sections other services own are theirs to check.
pub fn load_checked<T: Serialize + DeserializeOwned + Default>(file: Option<&Path>, owns: &[&str]) -> Result<T> {
    let fig = figment::<T>(file)?;
    let value: figment::value::Value = fig.extract().map_err(|e| Error::Config(e.to_string()))?;
    if let figment::value::Value::Dict(_, dict) = &value
        && let Some(k) = dict.keys().find(|k| !SECTIONS.contains(&k.as_str()))
    {
        return Err(Error::Config(format!("[{k}]: no Whistle service has this section (there are {})", SECTIONS.join(", "))));
    }
    let mut unknown = Vec::new();
    let config = serde_ignored::deserialize(&value, |path| unknown.push(path.to_string())).map_err(|e| Error::Config(e.to_string()))?;
    // A whole section the service does not read is not its to check.
    let checked = |path: &&String| path.split_once('.').is_some_and(|(s, _)| owns.contains(&s) || SHARED.contains(&s));
    if let Some(path) = unknown.iter().find(checked) {
        return Err(Error::Config(format!("{path}: unknown key (a typo, or a setting of another version?)")));
    }
    Ok(config)
}

/// A service's whole config: the sections it owns are named once, here.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// The sections this service checks besides the shared ones.
    const OWNS: &'static [&'static str];

    /// Values out of range, each named by its key ([`in_range`]).
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A service's config at start, loaded and checked: keys ([`load_checked`]),
/// ranges ([`ServiceConfig::check`]) and the city's offset.
pub fn load_service<T: ServiceConfig>(file: Option<&Path>) -> Result<T> {
    let config: T = load_checked(file, T::OWNS)?;
    config.check()?;
    Ok(config)
}

/// Refuses `value` of `key` outside `range`, saying what it must be.
pub fn in_range<V: PartialOrd + fmt::Debug>(key: &str, value: V, range: impl std::ops::RangeBounds<V> + fmt::Debug) -> Result<()> {
    if range.contains(&value) { Ok(()) } else { Err(Error::Config(format!("{key}: {value:?} is out of range (must be in {range:?})"))) }
}

/// The options every service's command line has for its config.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file: one for every service, each reads its sections
    /// (deploy/local/whistle.toml shows them all).
    #[arg(long, env = "WHISTLE_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective config (file, environment and defaults; secrets hidden) and exit.
    #[arg(long, global = true)]
    pub print_config: bool,
}

impl ConfigArgs {
    /// The service's config, loaded and checked ([`load_service`]).
    pub fn load<T: ServiceConfig>(&self) -> Result<T> {
        load_service(self.config.as_deref())
    }

    /// With `--print-config`, prints `config` as TOML (secrets hidden) and
    /// says so: the service then exits.
    pub fn printed<T: Serialize>(&self, config: &T) -> Result<bool> {
        if self.print_config {
            print!("{}", print(config)?);
        }
        Ok(self.print_config)
    }
}

/// The effective config as TOML, every secret written as `<redacted>`
/// (`--print-config`).
pub fn print<T: Serialize>(config: &T) -> Result<String> {
    whistle_domain::request::masked(|| toml::to_string_pretty(config)).map_err(|e| Error::Config(e.to_string()))
}

/// A value that must never be printed (passwords, tokens, URLs with
/// credentials): the same idea as a citizen's phone, so the same type.
pub type Secret<T> = whistle_domain::Sensitive<T>;

/// The city every service serves (`[city]`): its file (units, gazetteer,
/// routing, classification rules) and its UTC offset, said once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CitySettings {
    pub file: std::path::PathBuf,
    /// `+08:00`.
    pub utc_offset: String,
    /// The knowledge base: the answers to the questions citizens ask most.
    pub knowledge: std::path::PathBuf,
}

impl Default for CitySettings {
    fn default() -> Self {
        CitySettings {
            file: "deploy/config/demo-city.toml".into(),
            utc_offset: "+08:00".into(),
            knowledge: "deploy/config/knowledge.toml".into(),
        }
    }
}

impl CitySettings {
    pub fn offset(&self) -> Result<time::UtcOffset> {
        time::UtcOffset::parse(&self.utc_offset, time::macros::format_description!("[offset_hour]:[offset_minute]"))
            .map_err(|e| Error::Config(format!("city.utc_offset: {:?} is not an offset like \"+08:00\": {e}", self.utc_offset)))
    }

    /// Reads and checks the city file.
    pub fn load(&self) -> Result<whistle_domain::city::City> {
        crate::city::load(&self.file).map_err(|e| Error::Config(format!("city.file: {e}")))
    }

    /// Reads, checks and indexes the knowledge base.
    pub fn knowledge(&self) -> Result<whistle_domain::knowledge::KnowledgeBase> {
        let bad = |e: String| Error::Config(format!("city.knowledge: {}: {e}", self.knowledge.display()));
        let text = std::fs::read_to_string(&self.knowledge).map_err(|e| bad(e.to_string()))?;
        let file: whistle_domain::knowledge::KnowledgeFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        whistle_domain::knowledge::KnowledgeBase::new(file.entries).map_err(|e| bad(e.to_string()))
    }

    /// The working-day calendar in the city's time.
    pub fn calendar(&self, c: &CalendarSettings) -> Result<WorkCalendar> {
        self.offset()?;
        WorkCalendar::try_from(CalendarConfig {
            utc_offset: self.utc_offset.clone(),
            holidays: c.holidays.clone(),
            makeup_workdays: c.makeup_workdays.clone(),
        })
        .map_err(|e| Error::Config(format!("calendar.{e}")))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `host:port,host:port`.
    pub brokers: String,
    /// Prepended to every topic name (separate environments, tests).
    pub topic_prefix: String,
    /// Prepended to every consumer group id.
    pub group_prefix: String,
    /// Create the project's topics at start-up if missing.
    pub create_topics: bool,
    /// Replication factor for created topics.
    pub replication: i32,
    /// How often each consumer reports its lag (librdkafka's statistics; the
    /// broker is asked when they stop coming), in milliseconds.
    pub lag_interval_ms: u64,
    /// How long the broker may hold a consumer's fetch while it has nothing
    /// new (librdkafka's `fetch.wait.max.ms`), in milliseconds. A broker
    /// answers as soon as there is data, so a longer wait only saves idle
    /// fetches; Tansu 0.6 holds the fetch for most of the wait even with
    /// data there, so there every hop waits this long: keep it short on it.
    pub fetch_wait_ms: u64,
    /// A service is ready (`/readyz`) while each of its consumer groups is
    /// at most this many messages behind.
    pub ready_max_lag: i64,
    /// Extra librdkafka properties (security.protocol, sasl.*, ...).
    pub properties: BTreeMap<String, Secret<String>>,
    /// `sasl.password`, kept apart so it can come from the environment
    /// (`WHISTLE__KAFKA__SASL_PASSWORD`, a Secret): a dotted property
    /// name cannot be spelled in an environment variable.
    pub sasl_password: Option<Secret<String>>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            group_prefix: String::new(),
            create_topics: true,
            replication: 1,
            lag_interval_ms: 5000,
            fetch_wait_ms: 100,
            ready_max_lag: 1000,
            properties: BTreeMap::new(),
            sasl_password: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://host:port/db`; may carry a password, so it is secret.
    pub url: Secret<String>,
    /// Prepended to every key.
    pub key_prefix: String,
    /// Redis Cluster seed nodes (`redis://host:port`); when set, services
    /// that support it (the timers) use the cluster instead of `url`.
    pub cluster_nodes: Vec<Secret<String>>,
    /// For TLS (`rediss://` URLs): a PEM file of the CA that signed the
    /// server's certificate, when it is not one the system trusts.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::new("redis://127.0.0.1:6379/0".into()),
            key_prefix: "whistle:".into(),
            cluster_nodes: Vec::new(),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint (e.g. `http://127.0.0.1:4317`); spans are exported
    /// only when set. Logs go to stderr, filtered by `RUST_LOG`.
    pub otlp_endpoint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        kafka: KafkaConfig,
        redis: RedisConfig,
    }

    #[test]
    fn shipped_or_missing_secrets_refuse_to_start_outside_the_local_profile() {
        let production = Deployment::default();
        let shipped = Secret::new("change-me-revisit-link-secret".to_owned());
        let e = production.require_secret("revisit.link_secret", Some(&shipped)).unwrap_err();
        assert!(e.to_string().starts_with("configuration: revisit.link_secret: this is the secret shipped with Whistle"), "{e}");
        assert!(
            production
                .require_secret("revisit.sms_reply_token", None)
                .unwrap_err()
                .to_string()
                .contains("required outside the local profile")
        );
        assert!(production.require_secret("k", Some(&Secret::new("short".into()))).unwrap_err().to_string().contains("at least 16"));
        production.require_secret("k", Some(&Secret::new("a-long-enough-real-secret".into()))).unwrap();
        let local = Deployment { profile: Profile::Local };
        local.require_secret("revisit.link_secret", Some(&shipped)).unwrap();
        assert!(same_secret(b"abc", b"abc") && !same_secret(b"abc", b"abd") && !same_secret(b"abc", b"ab"));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/whistle.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/whistle.toml does not exist"), "{err}");
    }

    #[test]
    fn file_overrides_defaults_and_secrets_never_print() {
        let dir = std::env::temp_dir().join(format!("whistle-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("w.toml");
        std::fs::write(&file, "[kafka]\nbrokers = \"k:1\"\n[redis]\nurl = \"redis://:hunter2@r:1\"\n").unwrap();
        let s: Sample = load(Some(&file)).unwrap();
        assert_eq!(s.kafka.brokers, "k:1");
        assert_eq!(s.redis.key_prefix, "whistle:");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

/// Where a service runs (`[deployment] profile`): `local` (a developer's
/// machine, the demo's shipped secrets allowed) or `production` (the
/// default: a shipped, empty or short secret refuses to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Local,
    #[default]
    Production,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Deployment {
    pub profile: Profile,
}

/// The secrets shipped in this repository (defaults and the local demo's):
/// anyone can read them, so they sign nothing outside the local profile.
pub const SHIPPED_SECRETS: &[&str] =
    &["change-me-revisit-link-secret", "local-demo-revisit-link-secret", "local-demo-sms-reply", "local-demo-sms-key"];

impl Deployment {
    /// Refuses, naming the key, a secret that is missing, short or shipped
    /// with the project, unless the profile is local.
    pub fn require_secret(&self, key: &str, value: Option<&Secret<String>>) -> crate::Result<()> {
        if self.profile == Profile::Local {
            return Ok(());
        }
        let v = value.map(|s| s.expose().trim()).unwrap_or("");
        if v.is_empty() {
            return Err(crate::Error::Config(format!(
                "{key}: required outside the local profile ([deployment] profile = \"local\" on a developer's machine)"
            )));
        }
        if SHIPPED_SECRETS.contains(&v) {
            return Err(crate::Error::Config(format!(
                "{key}: this is the secret shipped with Whistle, which anyone can read; set your own (a secret store, WHISTLE__… variables)"
            )));
        }
        if v.chars().count() < 16 {
            return Err(crate::Error::Config(format!("{key}: use at least 16 characters")));
        }
        Ok(())
    }
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signed revisit link citizens open (`[revisit] link_secret` and
/// `public_url`): the revisit service checks it, the notifier and intake's
/// tracking page make it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RevisitLink {
    pub link_secret: Secret<String>,
    /// Where citizens open their link: `<public_url>/r/<token>`.
    pub public_url: String,
}

impl Default for RevisitLink {
    fn default() -> Self {
        RevisitLink { link_secret: Secret::new("change-me-revisit-link-secret".into()), public_url: "http://127.0.0.1:8026".into() }
    }
}

impl RevisitLink {
    /// The link of a ticket's revisit question.
    pub fn url(&self, ticket: &whistle_domain::TicketId) -> String {
        format!(
            "{}/r/{}",
            self.public_url.trim_end_matches('/'),
            whistle_domain::revisit::link_token(self.link_secret.expose().as_bytes(), ticket)
        )
    }
}

/// The working-day calendar as configured (`[calendar]`), in the city's
/// offset ([`CitySettings::calendar`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CalendarSettings {
    pub holidays: Vec<String>,
    pub makeup_workdays: Vec<String>,
}

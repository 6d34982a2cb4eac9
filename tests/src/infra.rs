//! The real broker, Redis and mail sink the tests run on (started through
//! the project's own scripts when they are not up), and the repository's files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo city, by its file in the repository.
pub fn city() -> whistle_runtime::config::CitySettings {
    whistle_runtime::config::CitySettings {
        file: city_file(),
        knowledge: repo_root().join("deploy/config/knowledge.toml"),
        ..Default::default()
    }
}

pub fn city_file() -> PathBuf {
    repo_root().join("deploy/config/demo-city.toml")
}

/// The classifier's model, as shipped.
pub fn model_file() -> PathBuf {
    repo_root().join("services/classifier/model/whistle.model")
}

#[derive(Debug, Clone)]
pub struct Infra {
    pub brokers: String,
    pub redis_url: String,
    /// The SMTP server (aiosmtpd) and where it writes what it accepts.
    pub smtp: String,
    pub maildir: PathBuf,
}

pub(crate) fn port_open(addr: &str) -> bool {
    addr.parse::<SocketAddr>().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// The broker, Redis and the SMTP server, started by the project's script if they are down.
pub fn infra() -> &'static Infra {
    static INFRA: OnceLock<Infra> = OnceLock::new();
    INFRA.get_or_init(|| {
        let kafka_port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
        let redis_port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
        let brokers = format!("127.0.0.1:{kafka_port}");
        let redis = format!("127.0.0.1:{redis_port}");
        let smtp = format!("127.0.0.1:{}", std::env::var("SMTP_PORT").unwrap_or_else(|_| "2525".into()));
        if !port_open(&brokers) || !port_open(&redis) || !port_open(&smtp) {
            let status = std::process::Command::new("bash")
                .arg(repo_root().join("deploy/local/infra.sh"))
                .arg("start")
                .status()
                .expect("run deploy/local/infra.sh");
            assert!(status.success(), "deploy/local/infra.sh start failed");
        }
        // deploy/local/env.sh's default: shared by every checkout, like the port.
        let maildir = std::env::var("SMTP_MAILDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".whistle/smtp/mail"));
        init_logs();
        Infra { brokers, redis_url: format!("redis://{redis}/0"), smtp, maildir }
    })
}

/// The 3-node Redis Cluster on loopback, started by the project's script.
pub fn cluster() -> &'static Vec<String> {
    static CLUSTER: OnceLock<Vec<String>> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("deploy/local/redis-cluster.sh"))
            .arg("start")
            .status()
            .expect("run deploy/local/redis-cluster.sh");
        assert!(status.success(), "deploy/local/redis-cluster.sh start failed");
        let ports = std::env::var("REDIS_CLUSTER_PORTS").unwrap_or_else(|_| "7101 7102 7103".into());
        ports.split_whitespace().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    })
}

pub(crate) fn init_logs() {
    whistle_runtime::telemetry::init_for_tests();
}

/// A unique prefix for one test's topics, groups and keys.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{name}-{}-{n}-{}.", std::process::id(), &r[..8])
}

/// Where `deploy/local/install.sh` puts the tools (Helm, the collector, the
/// Python venv): `$WHISTLE_TOOLS`, else `~/.whistle/tools`.
pub fn tools() -> PathBuf {
    std::env::var_os("WHISTLE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".whistle/tools"))
}

/// A loopback port nothing listens on now (for a server the test starts
/// as a process, which cannot report a port 0 back).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

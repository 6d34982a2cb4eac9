//! Redis connections: a multiplexed, auto-reconnecting connection to one
//! server, or a cluster connection when `cluster_nodes` is configured. A
//! `rediss://` URL connects over TLS (the system's roots, plus `ca_file`);
//! a password or an ACL user goes in the URL (`rediss://user:pass@host`).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

use crate::{RedisConfig, Result};

/// The CA `ca_file` names, for TLS.
fn certificates(cfg: &RedisConfig) -> Result<Option<redis::TlsCertificates>> {
    let Some(file) = &cfg.ca_file else { return Ok(None) };
    let pem = std::fs::read(file).map_err(|e| crate::Error::Config(format!("redis.ca_file {}: {e}", file.display())))?;
    Ok(Some(redis::TlsCertificates { client_tls: None, root_cert: Some(pem) }))
}

pub async fn connect(cfg: &RedisConfig) -> Result<ConnectionManager> {
    let url = cfg.url.expose().as_str();
    let client = match certificates(cfg)? {
        Some(certs) if url.starts_with("rediss://") => redis::Client::build_with_tls(url, certs)?,
        Some(_) => return Err(crate::Error::Config("redis.ca_file is set but redis.url is not a rediss:// (TLS) URL".into())),
        None => redis::Client::open(url)?,
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(3);
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// One server or a cluster, behind one type. Cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// A cluster connection if `cluster_nodes` is set, else the `url` server.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        if cfg.cluster_nodes.is_empty() {
            return Ok(RedisConn::Single(connect(cfg).await?));
        }
        let nodes: Vec<&str> = cfg.cluster_nodes.iter().map(|n| n.expose().as_str()).collect();
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10));
        if let Some(certs) = certificates(cfg)? {
            builder = builder.certs(certs);
        }
        let client = builder.build()?;
        Ok(RedisConn::Cluster(client.get_async_connection().await?))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

//! Redis connections: a multiplexed, auto-reconnecting connection manager.

use redis::aio::ConnectionManager;

use crate::{RedisConfig, Result};

pub async fn connect(cfg: &RedisConfig) -> Result<ConnectionManager> {
    let client = redis::Client::open(cfg.url.expose().as_str())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(10)))
        .set_number_of_retries(3);
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

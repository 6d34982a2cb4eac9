//! The durability contract of what the services keep in Redis: nothing
//! there is the record (Kafka is), and **any restart or failover of the
//! Redis server counts as a loss**. Redis writes its append-only file once
//! a second, so a crash loses the last second's writes, a timer or a
//! number counter among them, without a trace; a promoted replica lacks
//! what was not yet replicated. So each read model keeps a marker whose
//! value is the run id of the Redis server that holds it (`INFO server`
//! tells it, and changes with every start). A marker that is missing (a
//! flush) or names another run (a restart, a failover, a restore from a
//! backup) means the read model may have lost data: it is rebuilt from
//! the topic, and until then nothing is decided on it (no ticket number
//! is handed out, no timer fired).
//!
//! The checks run inside Redis (a script), so a check and the write it
//! guards are one step, on the node that holds the keys in a cluster.

use crate::Result;

/// Lua: the run id of the server running the script.
pub const RUN_ID_LUA: &str = "string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')";

/// Lua: whether the marker at `key` (a Lua expression) was set by this run
/// of the server.
pub fn alive_lua(key: &str) -> String {
    format!("(redis.call('GET', {key}) == {RUN_ID_LUA})")
}

/// KEYS[1]: a marker. 1 if it was set by this run of the server, else 0.
static ALIVE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(&format!("if {} then return 1 end return 0", alive_lua("KEYS[1]"))));

/// KEYS[1]: a marker. Sets it to this run of the server.
static MARK: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(&format!("redis.call('SET', KEYS[1], {RUN_ID_LUA}) return 1")));

/// Whether the read model behind the marker `key` holds all it was given:
/// the marker is there and was set by this run of the server.
pub async fn alive<C: redis::aio::ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<bool> {
    let n: i64 = ALIVE.key(key).invoke_async(conn).await?;
    Ok(n == 1)
}

/// Marks the read model behind `key` as whole (after a rebuild).
pub async fn mark<C: redis::aio::ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<()> {
    let _: i64 = MARK.key(key).invoke_async(conn).await?;
    Ok(())
}

//! The ticket history the whistle level reads: how often the same category
//! was reported at the same place (the normalized address, or the community
//! when there is no address) within the city's repeat window. Kept in Redis,
//! one sorted set of ticket ids by time per (category, place); rebuilt from
//! the events topic when Redis lost it (on start, and while running when
//! its marker disappears).

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use whistle_domain::{Category, EventKind, Jurisdiction, TicketId};

use crate::Result;
use crate::features::fnv1a;
use crate::text::{is_cjk, is_hangul, is_word_letter, normalize};

/// Adds a report and counts the earlier ones of its window. Idempotent: a
/// redelivered report is the same member with the same time, and only
/// reports up to its own time count.
const RECORD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local at = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (at - 2 * window))
redis.call('PEXPIRE', KEYS[1], 3 * window)
return redis.call('ZCOUNT', KEYS[1], at - window, at) - 1";

#[derive(Clone)]
pub struct History {
    redis: ConnectionManager,
    prefix: String,
    window_ms: i64,
}

/// Where a report is, for counting repeats: the address as typed, without
/// spaces and punctuation, in one script form; else the community.
pub fn place_of(address: &str, jurisdiction: &Jurisdiction) -> Option<String> {
    let compact: String = normalize(address).chars().filter(|c| is_cjk(*c) || is_hangul(*c) || is_word_letter(*c)).collect();
    if compact.chars().count() >= 4 {
        return Some(format!("a{:016x}", fnv1a(&[compact.as_bytes()])));
    }
    jurisdiction.community.as_ref().map(|c| format!("c:{c}"))
}

impl History {
    pub fn new(redis: ConnectionManager, prefix: &str, window_days: u32) -> Self {
        History { redis, prefix: prefix.to_owned(), window_ms: i64::from(window_days) * 24 * 3600 * 1000 }
    }

    fn key(&self, category: Category, place: &str) -> String {
        format!("{}repeat:{category}:{place}", self.prefix)
    }

    fn alive_key(&self) -> String {
        format!("{}repeat:alive", self.prefix)
    }

    /// Records a report and returns how many earlier reports of the same
    /// category at the same place fall in the window before it.
    pub async fn record(&self, category: Category, place: &str, ticket: &TicketId, at: time::OffsetDateTime) -> Result<u32> {
        let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        let n: i64 = redis::Script::new(RECORD)
            .key(self.key(category, place))
            .arg(ticket.to_string())
            .arg(ms)
            .arg(self.window_ms)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(whistle_runtime::Error::from)?;
        Ok(n.max(0) as u32)
    }

    /// False when Redis may have lost some of the history (flushed,
    /// restarted, failed over: see [`whistle_runtime::marker`]).
    pub async fn alive(&self) -> Result<bool> {
        Ok(whistle_runtime::marker::alive(&mut self.redis.clone(), &self.alive_key()).await?)
    }

    /// Replays the events topic into the history: every classified (or
    /// reclassified) ticket of the window is a report at its place. Returns
    /// the reports restored.
    pub async fn rebuild(&self, kafka: &whistle_runtime::KafkaConfig, now: time::OffsetDateTime) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<whistle_domain::Event>(1024);
        let cfg = kafka.clone();
        let topic = whistle_runtime::Topics::new(kafka).events();
        let reader = tokio::task::spawn_blocking(move || {
            whistle_runtime::kafka::scan_topic(&cfg, &topic, |m| {
                if let Ok(e) = whistle_proto::decode_event(&m.payload) {
                    let _ = tx.blocking_send(e);
                }
            })
        });
        let since = now - time::Duration::milliseconds(self.window_ms);
        // Tickets received in the window: their address and time.
        let mut received: HashMap<TicketId, (String, time::OffsetDateTime)> = HashMap::new();
        let mut restored = 0;
        while let Some(e) = rx.recv().await {
            match &e.kind {
                EventKind::Received { request, .. } if e.occurred_at >= since => {
                    received.insert(e.ticket_id, (request.location.address.clone(), e.occurred_at));
                }
                EventKind::Classified { category, jurisdiction, .. } | EventKind::Reclassified { category, jurisdiction, .. } => {
                    if let Some((address, at)) = received.get(&e.ticket_id)
                        && let Some(place) = place_of(address, jurisdiction)
                    {
                        self.record(*category, &place, &e.ticket_id, *at).await?;
                        restored += 1;
                    }
                }
                _ => {}
            }
        }
        reader.await.map_err(|e| whistle_runtime::Error::task("history rebuild", e))??;
        whistle_runtime::marker::mark(&mut self.redis.clone(), &self.alive_key()).await?;
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_address_written_twice_is_one_place() {
        let none = Jurisdiction::default();
        assert_eq!(place_of("东城区 景山街道 3号楼", &none), place_of("东城区景山街道3号楼。", &none));
        assert_eq!(place_of("東城區景山街道3號樓", &none), place_of("东城区景山街道3号楼", &none));
        assert_ne!(place_of("东城区景山街道3号楼", &none), place_of("东城区景山街道4号楼", &none));
        assert_eq!(place_of("", &none), None);
        let c = Jurisdiction { community: Some("dc-jingshan-community-1".into()), ..Jurisdiction::default() };
        assert_eq!(place_of("", &c).as_deref(), Some("c:dc-jingshan-community-1"));
    }
}

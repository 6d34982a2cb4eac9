//! The revisit queue in Redis: one record per ticket waiting for its
//! revisit, a sorted set by due time, an index from the citizen's phone
//! (hashed) to the ticket for SMS replies, agents' claims and the fences that
//! make each attempt count once. All of it is rebuilt from the events topic
//! by the follower (the consumer replays from the start in a new group).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use whistle_domain::{PlatformId, TicketId, UnitCode};
use whistle_runtime::Result;

/// One ticket waiting for its revisit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub ticket_id: TicketId,
    pub number: String,
    pub unit: UnitCode,
    pub platform: PlatformId,
    pub category: String,
    pub language: String,
    pub result: String,
    pub request_text: String,
    /// For the agent who calls; never logged.
    /// The agent who calls sees it; logs and Debug never do.
    pub phone: Option<whistle_domain::Sensitive<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Tries so far in this round.
    pub attempts: u32,
    /// Which completion this is (0 first, 1 after the first rework, ...).
    pub round: u32,
}

#[derive(Clone)]
pub struct Tasks {
    redis: ConnectionManager,
    prefix: String,
}

/// Who holds a claim and for how much longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub agent: String,
    pub remaining_ms: i64,
}

/// The digits that identify a phone across formats (`+86 138...`, `138...`).
pub fn phone_digits(phone: &str) -> String {
    let d: String = phone.chars().filter(char::is_ascii_digit).collect();
    match d.strip_prefix("86") {
        Some(rest) if rest.len() == 11 => rest.to_owned(),
        _ => d,
    }
}

impl Tasks {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Tasks { redis, prefix: prefix.to_owned() }
    }

    fn task_key(&self, t: &TicketId) -> String {
        format!("{}revisit:task:{t}", self.prefix)
    }
    fn due_key(&self) -> String {
        format!("{}revisit:due", self.prefix)
    }
    fn claim_key(&self, t: &TicketId) -> String {
        format!("{}revisit:claim:{t}", self.prefix)
    }
    /// Keyed by a salted hash, so the phone is not a Redis key in clear.
    fn phone_key(&self, phone: &str) -> String {
        let h = Sha256::digest(format!("whistle-revisit:{}", phone_digits(phone)).as_bytes());
        let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}revisit:phone:{hex}", self.prefix)
    }
    fn fence_key(&self, t: &TicketId, round: u32, attempt: u32) -> String {
        format!("{}revisit:fence:{t}:{round}:{attempt}", self.prefix)
    }

    pub async fn upsert(&self, rec: &TaskRecord) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.task_key(&rec.ticket_id), serde_json::to_string(rec)?)
            .ignore()
            .zadd(self.due_key(), rec.ticket_id.to_string(), (rec.due_at.unix_timestamp_nanos() / 1_000_000) as i64)
            .ignore();
        if let Some(phone) = &rec.phone {
            pipe.set(self.phone_key(phone.expose()), rec.ticket_id.to_string()).ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    pub async fn remove(&self, ticket: &TicketId) -> Result<()> {
        let mut redis = self.redis.clone();
        if let Some(rec) = self.get(ticket).await?
            && let Some(phone) = &rec.phone
        {
            // Only if the phone still points at this ticket (a newer one may have taken it).
            let key = self.phone_key(phone.expose());
            let current: Option<String> = redis.get(&key).await?;
            if current.as_deref() == Some(ticket.to_string().as_str()) {
                let _: () = redis.del(&key).await?;
            }
        }
        let _: () = redis::pipe()
            .atomic()
            .del(self.task_key(ticket))
            .ignore()
            .zrem(self.due_key(), ticket.to_string())
            .ignore()
            .del(self.claim_key(ticket))
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(())
    }

    pub async fn get(&self, ticket: &TicketId) -> Result<Option<TaskRecord>> {
        let raw: Option<String> = self.redis.clone().get(self.task_key(ticket)).await?;
        Ok(match raw {
            Some(raw) => Some(serde_json::from_str(&raw)?),
            None => None,
        })
    }

    /// Waiting tasks due by `until` (all when `None`), oldest first.
    pub async fn due(&self, until: Option<OffsetDateTime>, limit: usize) -> Result<Vec<TaskRecord>> {
        let max = until.map_or("+inf".to_owned(), |t| ((t.unix_timestamp_nanos() / 1_000_000) as i64).to_string());
        let mut redis = self.redis.clone();
        let ids: Vec<TicketId> = {
            let ids: Vec<String> = redis.zrangebyscore_limit(self.due_key(), "-inf", max, 0, limit as isize).await?;
            ids.iter().filter_map(|id| TicketId::parse(id).ok()).collect()
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for all the records.
        let keys: Vec<String> = ids.iter().map(|id| self.task_key(id)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut redis).await?;
        raw.into_iter().flatten().map(|r| Ok(serde_json::from_str(&r)?)).collect()
    }

    /// The ticket waiting for a revisit of the citizen with this phone (the
    /// latest completed).
    pub async fn by_phone(&self, phone: &str) -> Result<Option<TicketId>> {
        let id: Option<String> = self.redis.clone().get(self.phone_key(phone)).await?;
        Ok(id.and_then(|id| TicketId::parse(&id).ok()))
    }

    pub async fn claim_of(&self, ticket: &TicketId) -> Result<Option<Claim>> {
        let mut redis = self.redis.clone();
        let agent: Option<String> = redis.get(self.claim_key(ticket)).await?;
        let Some(agent) = agent else { return Ok(None) };
        let remaining_ms: i64 = redis.pttl(self.claim_key(ticket)).await?;
        Ok(Some(Claim { agent, remaining_ms }))
    }

    /// Claims the ticket for `agent` for `ttl_ms` (renewing their own
    /// claim); returns the other agent's claim if someone else holds it.
    pub async fn claim(&self, ticket: &TicketId, agent: &str, ttl_ms: u64) -> Result<Option<Claim>> {
        let script = redis::Script::new(
            r"local cur = redis.call('GET', KEYS[1])
              if cur and cur ~= ARGV[1] then return {cur, redis.call('PTTL', KEYS[1])} end
              redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
              return {}",
        );
        let held: Vec<redis::Value> =
            script.key(self.claim_key(ticket)).arg(agent).arg(ttl_ms).invoke_async(&mut self.redis.clone()).await?;
        Ok(match held.as_slice() {
            [redis::Value::BulkString(a), redis::Value::Int(ms)] => {
                Some(Claim { agent: String::from_utf8_lossy(a).into_owned(), remaining_ms: *ms })
            }
            _ => None,
        })
    }

    /// Takes the fence of one attempt; false if it was already taken (the
    /// attempt is being or was recorded).
    pub async fn fence(&self, ticket: &TicketId, round: u32, attempt: u32) -> Result<bool> {
        let opts =
            redis::SetOptions::default().conditional_set(redis::ExistenceCheck::NX).with_expiration(redis::SetExpiry::EX(90 * 24 * 3600));
        let took: Option<String> = self.redis.clone().set_options(self.fence_key(ticket, round, attempt), 1, opts).await?;
        Ok(took.is_some())
    }

    pub async fn release_fence(&self, ticket: &TicketId, round: u32, attempt: u32) -> Result<()> {
        let _: () = self.redis.clone().del(self.fence_key(ticket, round, attempt)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_match_across_formats() {
        assert_eq!(phone_digits("+86 138-0013-8000"), "13800138000");
        assert_eq!(phone_digits("13800138000"), "13800138000");
        assert_eq!(phone_digits("+7 912 345 67 89"), "79123456789");
    }
}

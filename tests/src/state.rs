//! Looking inside Redis (timers, markers) and taking it away: the wipes
//! a test uses to make Redis lose its data.

use std::time::Duration;
use whistle_domain::{Clock, TicketId};

use crate::*;

impl Platform {
    /// Outstanding timers of a ticket in Redis (due or claimed).
    pub async fn timers_of(&self, ticket: &str) -> usize {
        let store = self.timer_store().await;
        store.timers_of(&TicketId::parse(ticket).expect("ticket id")).await.expect("timers").len()
    }

    /// Waits until a ticket has exactly `n` outstanding timers; fails naming how many it has.
    pub async fn wait_timers(&self, ticket: &str, n: usize, within: Duration) {
        eventually(&format!("ticket {ticket} with {n} timers"), within, Duration::from_millis(25), || async move {
            let have = self.timers_of(ticket).await;
            if have == n { Ok(()) } else { Err(format!("{have} timers")) }
        })
        .await
    }

    /// Timers of a ticket still waiting (not claimed), with due times.
    pub async fn due_of(&self, ticket: &str) -> Vec<(whistle_domain::TimerKind, time::OffsetDateTime)> {
        let store = self.timer_store().await;
        let due = store.due_of(&TicketId::parse(ticket).expect("ticket id")).await.expect("timers");
        due.into_iter()
            .map(|(k, ms)| {
                (
                    k,
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .expect("time")
                        .to_offset(time::macros::offset!(+8)),
                )
            })
            .collect()
    }

    /// Waits until the ticket's waiting timers satisfy `pred`; fails naming what it saw.
    pub async fn wait_due(
        &self,
        ticket: &str,
        within: Duration,
        pred: impl Fn(&[(whistle_domain::TimerKind, time::OffsetDateTime)]) -> bool,
    ) -> Vec<(whistle_domain::TimerKind, time::OffsetDateTime)> {
        let pred = &pred;
        eventually(&format!("the expected timers of {ticket}"), within, Duration::from_millis(50), || async move {
            let due = self.due_of(ticket).await;
            if pred(&due) { Ok(due) } else { Err(due) }
        })
        .await
    }

    /// Deletes every timer key of this platform: Redis "lost its data".
    pub async fn wipe_timers(&self) {
        let deleted = self.delete_keys(&["{w:*"]).await;
        assert!(deleted > 0, "no timer keys under {}{{w:*", self.prefix);
    }

    /// Deletes the ticket projection and the number counters: Redis "lost"
    /// what intake keeps there.
    pub async fn wipe_projection(&self) {
        self.delete_keys(&[
            "ticket:*",
            "ticket-number:*",
            "ticket-seq:*",
            "projection:*",
            "request:*",
            "queue:*",
            "work:*",
            "held:*",
            "open",
        ])
        .await;
    }

    /// Deletes every key of this platform, as FLUSHALL would: Redis lost
    /// everything while the services run.
    pub async fn wipe_everything(&self) {
        let deleted = self.delete_keys(&["*"]).await;
        assert!(deleted > 0, "no keys under {}", self.prefix);
    }

    /// Deletes the revisit queue: Redis "lost" what the revisit service keeps there.
    pub async fn wipe_revisits(&self) {
        let deleted = self.delete_keys(&["revisit:*"]).await;
        assert!(deleted > 0, "no revisit keys under {}revisit:*", self.prefix);
    }

    /// Deletes the classifier's repeat history: Redis "lost" it.
    pub async fn wipe_repeat_history(&self) {
        let deleted = self.delete_keys(&["repeat:*"]).await;
        assert!(deleted > 0, "no repeat history keys under {}repeat:*", self.prefix);
    }

    /// Waits until this platform's Redis holds `key` (without the prefix);
    /// panics naming it after `within`.
    pub async fn wait_key(&self, key: &str, within: Duration) {
        let client = redis::Client::open(self.redis.url.expose().as_str()).expect("redis");
        let c = client.get_multiplexed_async_connection().await.expect("redis connect");
        let name = format!("{}{key}", self.prefix);
        eventually(&format!("redis key {name}"), within, Duration::from_millis(25), || {
            let mut c = c.clone();
            let name = name.clone();
            async move {
                let n: i64 = redis::cmd("EXISTS").arg(&name).query_async(&mut c).await.expect("exists");
                if n > 0 { Ok(()) } else { Err("absent") }
            }
        })
        .await
    }

    /// Deletes the figures' daily tallies: Redis "lost" them.
    pub async fn wipe_figures(&self) {
        let deleted = self.delete_keys(&["figures:*"]).await;
        assert!(deleted > 0, "no figures keys under {}figures:*", self.prefix);
    }

    /// Deletes this platform's keys matching the patterns; returns how many.
    pub(crate) async fn delete_keys(&self, patterns: &[&str]) -> usize {
        let client = redis::Client::open(self.redis.url.expose().as_str()).expect("redis");
        let mut c = client.get_multiplexed_async_connection().await.expect("redis connect");
        let mut deleted = 0;
        for pattern in patterns {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}{pattern}", self.prefix)).query_async(&mut c).await.expect("keys");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut c).await.expect("del");
            }
            deleted += keys.len();
        }
        deleted
    }

    /// Waits until the sla-timer has run a firing round at the clock's
    /// current time for the shard holding `ticket`: arms a probe timer due
    /// now in that shard and waits for its event on Kafka. Whatever of
    /// `ticket` was due by now was claimed in that same round.
    pub async fn firing_round_passed(&self, ticket: &str) {
        let store = self.timer_store().await;
        let shard = store.shard_of(&TicketId::parse(ticket).expect("ticket id"));
        let probe = loop {
            let t = TicketId::new();
            if store.shard_of(&t) == shard {
                break t;
            }
        };
        let now_ms = (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let record = whistle_sla_timer::Record {
            version: whistle_domain::EventId::new(),
            unit: whistle_domain::UnitCode::parse("probe").expect("unit"),
            deadline_ms: now_ms,
            traceparent: None,
        };
        let arm = whistle_sla_timer::Arm { kind: whistle_domain::TimerKind::FirstOverdue, due_ms: now_ms };
        store.arm(&probe, &record, &[arm], [false; 3]).await.expect("arm probe");
        let probe = probe.to_string();
        eventually("a firing round of the sla-timer", Duration::from_secs(60), Duration::from_millis(50), || async {
            if self.events_for(&probe).await.is_empty() { Err("the probe timer has not fired") } else { Ok(()) }
        })
        .await
    }

    /// The timer store the sla-timer uses, for looking inside.
    pub async fn timer_store(&self) -> whistle_sla_timer::TimerStore<redis::aio::ConnectionManager> {
        let conn = whistle_runtime::redis_client::connect(&self.redis).await.expect("redis");
        whistle_sla_timer::TimerStore::new(conn, &self.prefix, whistle_sla_timer::TimerSettings::default().shards)
    }
}

//! Daily tallies of the figures, kept in Redis as the events arrive, so a
//! period made of whole days is answered by adding up its days instead of
//! reading the whole topic. Each event goes through the same
//! [`whistle_domain::figures::step`] as the fold over the topic: per ticket,
//! what is known of it (its `Track`) and the offset of the last event
//! applied; per city-time day, one hash of `kind\tcode\tcounter` -> count.
//! The track, the day's counts and the position change in one script, only if
//! the track is still what the event was computed from, so an event counts
//! once even when redelivered or replayed beside the live consumer. Rebuilt
//! from the topic when Redis lost it (as the revisit queue is).

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use time::{OffsetDateTime, UtcOffset};
use whistle_domain::figures::{Counter, Counts, Figures, Scope, Track, step};
use whistle_domain::{Event, EventKind};
use whistle_runtime::consumer::{HandleError, Handler, Incoming};
use whistle_runtime::{KafkaConfig, Topics};

use crate::{Error, Result};

/// A ticket's track and the offset of the last event applied to it (a
/// ticket's events are all on one partition).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    track: Track,
    last: i64,
}

const APPLY: &str = r"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
";

/// Did applying an event change anything?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Counted,
    AlreadyCounted,
}

#[derive(Clone)]
pub struct Tally {
    redis: ConnectionManager,
    prefix: String,
    offset: UtcOffset,
    kafka: KafkaConfig,
    group: String,
    script: std::sync::Arc<redis::Script>,
}

fn field(scope: &Scope, counter: Counter) -> String {
    let (kind, code) = scope.parts();
    format!("{kind}\t{code}\t{}", counter.as_str())
}

impl Tally {
    pub fn new(redis: ConnectionManager, prefix: &str, offset: UtcOffset, kafka: KafkaConfig, group: String) -> Self {
        Tally { redis, prefix: prefix.to_owned(), offset, kafka, group, script: std::sync::Arc::new(redis::Script::new(APPLY)) }
    }

    /// The consumer group that keeps the tallies.
    pub fn group(&self) -> &str {
        &self.group
    }

    fn track_key(&self, e: &Event) -> String {
        format!("{}figures:track:{}", self.prefix, e.ticket_id)
    }
    fn day_key(&self, day: time::Date) -> String {
        format!("{}figures:day:{day}", self.prefix)
    }
    fn alive_key(&self) -> String {
        format!("{}figures:alive", self.prefix)
    }

    /// False when Redis may have lost some of the tallies (see
    /// [`whistle_runtime::marker`]).
    pub async fn alive(&self) -> Result<bool> {
        Ok(whistle_runtime::marker::alive(&mut self.redis.clone(), &self.alive_key()).await?)
    }

    /// Counts one event (at `offset` on its partition) once.
    pub async fn apply(&self, e: &Event, offset: i64) -> Result<Applied> {
        let mut redis = self.redis.clone();
        let key = self.track_key(e);
        loop {
            let raw: Option<String> = redis::AsyncCommands::get(&mut redis, &key).await.map_err(whistle_runtime::Error::from)?;
            let mut stored: Stored = match &raw {
                Some(r) => serde_json::from_str(r).map_err(whistle_runtime::Error::from)?,
                None => Stored { last: -1, ..Stored::default() },
            };
            if stored.last >= offset {
                return Ok(Applied::AlreadyCounted);
            }
            if raw.is_none() && !matches!(e.kind, EventKind::Received { .. }) && !self.alive().await? {
                // Redis lost the tallies and the rebuild has not reached this ticket.
                return Err(Error::Unavailable("the figures are being rebuilt from the topic".into()));
            }
            let add = step(&mut stored.track, e);
            stored.last = offset;
            let mut sums: HashMap<String, u64> = HashMap::new();
            for (scope, counter) in add {
                *sums.entry(field(&scope, counter)).or_default() += 1;
            }
            let day = e.occurred_at.checked_to_offset(self.offset).ok_or_else(|| {
                Error::Invalid(format!("event {} occurred at {}, which has no day in the city's time", e.id, e.occurred_at))
            })?;
            let mut call = self.script.key(&key);
            call.key(self.day_key(day.date()));
            call.arg(raw.as_deref().unwrap_or("")).arg(serde_json::to_string(&stored).map_err(whistle_runtime::Error::from)?);
            for (f, n) in &sums {
                call.arg(f).arg(*n);
            }
            let done: i64 = call.invoke_async(&mut redis).await.map_err(whistle_runtime::Error::from)?;
            if done == 1 {
                return Ok(Applied::Counted);
            }
            // Someone else (a replay) moved the track meanwhile: look again.
        }
    }

    /// Replays the events topic into the tallies (beside the live consumer:
    /// each event still counts once); returns how many events it read.
    pub async fn rebuild(&self) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(i64, Event)>(1024);
        let kafka = self.kafka.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let topic = Topics::new(&kafka).events();
            whistle_runtime::kafka::scan_topic(&kafka, &topic, |m| {
                if let Ok(e) = whistle_proto::decode_event(&m.payload) {
                    let _ = tx.blocking_send((m.offset, e));
                }
            })
        });
        while let Some((offset, e)) = rx.recv().await {
            match self.apply(&e, offset).await {
                // The topic holds no `received` for its ticket before it (the
                // topic is read in order): nothing to count it in.
                Err(Error::Unavailable(_)) => tracing::debug!(event = %e.id, "no ticket to count it in; skipped"),
                // Poison in the record (it was dead-lettered when it came): skipped too.
                Err(Error::Invalid(why)) => tracing::warn!(event = %e.id, %why, "not counted"),
                r => {
                    r?;
                }
            }
        }
        let read = reader.await.map_err(|e| whistle_runtime::Error::task("figures rebuild", e))??;
        whistle_runtime::marker::mark(&mut self.redis.clone(), &self.alive_key()).await?;
        Ok(read)
    }

    /// Is `[from, to)` made of whole days in city time?
    pub fn whole_days(&self, from: OffsetDateTime, to: OffsetDateTime) -> bool {
        from.to_offset(self.offset).time() == time::Time::MIDNIGHT && to.to_offset(self.offset).time() == time::Time::MIDNIGHT
    }

    /// The figures of `[from, to)` from the daily tallies, if both ends are
    /// midnights in city time (other periods need the fold over the topic).
    pub async fn query(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Option<Figures>> {
        if !self.whole_days(from, to) {
            return Ok(None);
        }
        let (lf, lt) = (from.to_offset(self.offset), to.to_offset(self.offset));
        let mut pipe = redis::pipe();
        let mut day = lf.date();
        while day < lt.date() {
            pipe.hgetall(self.day_key(day));
            day = day.next_day().ok_or_else(|| Error::Invalid("the period runs past the calendar".into()))?;
        }
        let days: Vec<HashMap<String, u64>> = pipe.query_async(&mut self.redis.clone()).await.map_err(whistle_runtime::Error::from)?;
        let mut counts: BTreeMap<Scope, Counts> = BTreeMap::new();
        for (f, n) in days.iter().flatten() {
            let mut parts = f.split('\t');
            let (Some(kind), Some(code), Some(counter)) = (parts.next(), parts.next(), parts.next()) else { continue };
            if let (Some(scope), Some(counter)) = (Scope::from_parts(kind, code), Counter::parse(counter)) {
                counts.entry(scope).or_default().add(counter, *n);
            }
        }
        Ok(Some(Figures::from_counts(from, to, counts)))
    }

    /// Waits (up to `within`) until the tallies hold every event the topic
    /// had when asked: the tally group committed up to its end.
    pub async fn caught_up(&self, within: std::time::Duration) -> Result<bool> {
        let start = std::time::Instant::now();
        loop {
            let (kafka, group) = (self.kafka.clone(), self.group.clone());
            let done =
                tokio::task::spawn_blocking(move || whistle_runtime::kafka::group_caught_up(&kafka, &group, &Topics::new(&kafka).events()))
                    .await
                    .map_err(|e| whistle_runtime::Error::task("figures position", e))??;
            if done {
                return Ok(true);
            }
            if start.elapsed() >= within {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Handler for Tally {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        match self.apply(&event, msg.offset).await {
            Ok(_) => Ok(()),
            Err(crate::Error::Runtime(e)) => Err(e.into()),
            Err(crate::Error::Invalid(why)) => Err(HandleError::Poison(why)),
            Err(e) => Err(HandleError::Retry(e.to_string())),
        }
    }
}

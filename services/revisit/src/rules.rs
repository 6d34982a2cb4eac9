//! The revisit rules at work: recording an attempt and what follows from
//! it, and the queue rebuilt from the topic when Redis lost it.

use crate::follow::task_for;
use crate::tasks::{TaskRecord, Tasks};
use crate::{Error, Result, tally};
use std::sync::Arc;
use std::time::Duration;
use whistle_domain::revisit::{RevisitPolicy, RevisitTask};
use whistle_domain::{
    Actor, Clock, DeadlinePolicy, Event, EventId, EventKind, ReasonText, Resolution, RevisitOutcome, TicketId, TicketState, WorkCalendar,
};
use whistle_runtime::retry::{GaveUp, Retry};
use whistle_runtime::{EventProducer, KafkaConfig, Shutdown, TicketStore, Topics};

/// Who answered the revisit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answerer {
    Agent(String),
    /// By SMS reply or the signed link.
    Citizen,
}

/// What became of the ticket after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Closed(Resolution),
    Reopened { due_at: time::OffsetDateTime },
    Retry { due_at: time::OffsetDateTime },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub ticket_id: TicketId,
    pub number: String,
    pub attempts: u32,
    pub next: Next,
}

/// The revisit rules at work, shared by the gRPC and HTTP fronts and the follower.
pub struct Core {
    pub(crate) tasks: Tasks,
    pub(crate) store: TicketStore,
    pub(crate) producer: EventProducer,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rules: RevisitPolicy,
    pub(crate) deadlines: DeadlinePolicy,
    pub(crate) calendar: WorkCalendar,
    pub(crate) kafka: KafkaConfig,
    pub(crate) claim_ms: u64,
    pub(crate) link_secret: Vec<u8>,
    pub(crate) tally: tally::Tally,
    /// Fired when the service stops: no retry waits through it.
    pub(crate) shutdown: Shutdown,
}

impl Core {
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn max_attempts(&self) -> u32 {
        self.rules.max_attempts
    }

    /// The ticket id of a number or id, if the ticket exists.
    pub async fn resolve(&self, ticket: &str) -> Result<TicketId> {
        if let Ok(id) = TicketId::parse(ticket) {
            return Ok(id);
        }
        match self.store.find(ticket).await? {
            Some(p) => Ok(p.ticket.id),
            None => Err(Error::NotFound(format!("no ticket {ticket:?}"))),
        }
    }

    /// Records one revisit attempt and publishes what follows from it.
    pub async fn record(&self, ticket: &TicketId, outcome: RevisitOutcome, reason: &str, by: &Answerer) -> Result<Recorded> {
        let task = self.tasks.get(ticket).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "ticket {ticket} has no revisit waiting (not completed yet, already closed, or just completed: try again)"
            ))
        })?;
        if let Answerer::Agent(agent) = by
            && let Some(claim) = self.tasks.claim_of(ticket).await?
            && claim.agent != *agent
        {
            return Err(Error::Conflict(format!(
                "ticket {} is claimed by agent {} for {} s more",
                task.number,
                claim.agent,
                claim.remaining_ms / 1000
            )));
        }
        let reason = reason_given(outcome, reason, by)?;
        let actor = match by {
            Answerer::Agent(a) => Actor::agent(a),
            Answerer::Citizen => Actor::citizen(),
        };
        let first = Event {
            id: EventId::new(),
            ticket_id: *ticket,
            occurred_at: self.clock.now(),
            actor,
            kind: EventKind::RevisitRecorded { outcome, reason: reason.clone() },
        };
        let (_, next) = self.consequences(&first, task.attempts)?;
        if !self.tasks.fence(ticket, task.round, task.attempts).await? {
            return Err(Error::Conflict(format!("this revisit attempt of ticket {} was just recorded", task.number)));
        }
        if let Err(err) = self.producer.publish(&first).await {
            // Nothing was recorded: the attempt may be made again.
            self.tasks.release_fence(ticket, task.round, task.attempts).await?;
            return Err(Error::Unavailable(format!("could not record the revisit of ticket {}: {err}", task.number)));
        }
        // What follows from the attempt (closed, reopened) is published by
        // the follower when it meets the attempt on the topic: one
        // publisher, so a crash here loses nothing and nothing is published
        // twice.
        let attempts = task.attempts + 1;
        match next {
            Next::Retry { due_at } => self.tasks.upsert(&TaskRecord { due_at, attempts, ..task.clone() }).await?,
            Next::Closed(_) | Next::Reopened { .. } => self.tasks.remove(ticket).await?,
        }
        tracing::info!(ticket = %ticket, outcome = outcome.as_str(), attempts, next = ?next, "revisit recorded");
        Ok(Recorded { ticket_id: *ticket, number: task.number, attempts, next })
    }

    /// What follows from a recorded attempt (`recorded`, a `revisit_recorded`
    /// event, made after `attempts` earlier tries): closed, reopened for
    /// rework, or another try later.
    /// The events' ids and times derive from the attempt's, so the call that
    /// recorded it and the follower (after a crash in between) publish the
    /// same events, which count once.
    pub(crate) fn consequences(&self, recorded: &Event, attempts: u32) -> Result<(Vec<Event>, Next)> {
        let EventKind::RevisitRecorded { outcome, reason } = &recorded.kind else {
            return Err(Error::Invalid(format!("{} is not a revisit attempt", recorded.kind.name())));
        };
        let at = recorded.occurred_at;
        let mut state = RevisitTask::Due { due_at: at, attempts };
        let closing = state.record(*outcome, at, &self.rules, &self.calendar).map_err(|e| Error::Invalid(e.to_string()))?;
        let follow = |purpose: &str, kind: EventKind| Event {
            id: EventId::derived(&recorded.id, purpose),
            ticket_id: recorded.ticket_id,
            occurred_at: at,
            actor: recorded.actor.clone(),
            kind,
        };
        Ok(match (closing, &state) {
            (Some(EventKind::Closed { resolution }), _) => {
                (vec![follow("closed", EventKind::Closed { resolution })], Next::Closed(resolution))
            }
            (_, RevisitTask::Due { due_at, .. }) => (Vec::new(), Next::Retry { due_at: *due_at }),
            (_, RevisitTask::Finished { .. }) => {
                let id = EventId::derived(&recorded.id, "reopened");
                let deadline = self.deadlines.rework(&self.calendar, at, id);
                (
                    vec![follow("reopened", EventKind::Reopened { reason: reason.clone(), deadline })],
                    Next::Reopened { due_at: deadline.due_at },
                )
            }
        })
    }

    /// The attempt is on record; what follows from it (closed, reopened)
    /// must follow it, so it is tried until the broker takes it.
    pub(crate) async fn publish_consequences(&self, number: &str, rest: &[Event]) -> Result<()> {
        for e in rest {
            let published = Retry::CONSUMER
                .limited(20)
                .run(
                    &self.shutdown,
                    |_| self.producer.publish(e),
                    |err| !err.is_transient(),
                    |attempt, err, _| {
                        tracing::warn!(ticket = %e.ticket_id, event = e.kind.name(), attempt, error = %err, "publishing failed; retrying");
                    },
                )
                .await;
            if let Err(gave_up) = published {
                let err = match gave_up {
                    GaveUp::Failed { error, .. } => error.to_string(),
                    GaveUp::ShuttingDown(_) => "the service is stopping".to_owned(),
                };
                tracing::error!(ticket = %e.ticket_id, event = e.kind.name(), error = %err, "revisit recorded but its consequence could not be published");
                return Err(Error::Unavailable(format!(
                    "the revisit of ticket {number} is recorded but its {} is not: {err}",
                    e.kind.name()
                )));
            }
        }
        Ok(())
    }

    fn alive_key(&self) -> String {
        format!("{}revisit:alive", self.store.prefix())
    }

    /// False when Redis may have lost some of the revisit queue (flushed,
    /// restarted, failed over: see [`whistle_runtime::marker`]).
    pub async fn alive(&self) -> Result<bool> {
        Ok(whistle_runtime::marker::alive(&mut self.store.redis(), &self.alive_key()).await?)
    }

    /// Rebuilds the revisit queue from the events topic: every ticket whose
    /// events leave it completed gets its task back, due from its completion
    /// or its last unreachable try. Returns how many tasks it wrote.
    pub async fn rebuild(&self) -> Result<usize> {
        let kafka = self.kafka.clone();
        let waiting = tokio::task::spawn_blocking(move || {
            let mut tickets: std::collections::HashMap<TicketId, (whistle_domain::Ticket, time::OffsetDateTime, bool)> = Default::default();
            let topic = Topics::new(&kafka).events();
            whistle_runtime::kafka::scan_topic(&kafka, &topic, |m| {
                let Ok(e) = whistle_proto::decode_event(&m.payload) else { return };
                if let EventKind::Received { .. } = e.kind {
                    if let Ok(t) = whistle_domain::Ticket::open(&e) {
                        tickets.entry(e.ticket_id).or_insert((t, e.occurred_at, false));
                    }
                    return;
                }
                let Some((t, at, retry)) = tickets.get_mut(&e.ticket_id) else { return };
                // Refused transitions are skipped, as the projection does.
                if t.apply(&e).is_ok() {
                    match e.kind {
                        EventKind::Completed { .. } => (*at, *retry) = (e.occurred_at, false),
                        EventKind::RevisitRecorded { outcome: RevisitOutcome::Unreachable, .. } => (*at, *retry) = (e.occurred_at, true),
                        _ => {}
                    }
                }
                // A closed ticket never waits for a revisit again: what is
                // held is bounded by the tickets still open, not all ever.
                if t.state.is_closed() {
                    tickets.remove(&e.ticket_id);
                }
            })?;
            Ok::<_, whistle_runtime::Error>(
                tickets.into_values().filter(|(t, _, _)| matches!(t.state, TicketState::Completed { .. })).collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|e| whistle_runtime::Error::task("revisit rebuild", e))??;
        for (t, at, retry) in &waiting {
            let due = if *retry { self.rules.retry_at(*at, &self.calendar) } else { self.rules.first_due(*at, &self.calendar) };
            if let Some(rec) = task_for(t, due) {
                self.tasks.upsert(&rec).await?;
            }
        }
        whistle_runtime::marker::mark(&mut self.store.redis(), &self.alive_key()).await?;
        Ok(waiting.len())
    }

    /// Rebuilds what Redis lost (the queue, the daily tallies) from the topic.
    pub(crate) async fn restore(&self) -> Result<()> {
        if !self.alive().await? {
            let n = self.rebuild().await?;
            tracing::warn!(
                tasks = n,
                "redis lost the revisit queue or restarted (it may lack the last writes); rebuilt from the events topic"
            );
        }
        if !self.tally.alive().await? {
            let n = self.tally.rebuild().await?;
            tracing::warn!(
                events = n,
                "redis lost the figures' daily tallies or restarted (they may lack the last writes); rebuilt from the events topic"
            );
        }
        Ok(())
    }

    /// Restores at start and whenever a marker disappears.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration, shutdown: Shutdown) -> Result<()> {
        loop {
            // A Redis or broker blip is looked at again next round.
            match self.restore().await {
                Err(Error::Runtime(e)) if e.is_transient() => tracing::warn!(error = %e, "cannot check the revisit queue; will look again"),
                r => r?,
            }
            if !whistle_runtime::shutdown::sleep_or_shutdown(every, &shutdown).await {
                return Ok(());
            }
        }
    }
}

/// The reason on record: an agent is told what is wrong with it (and must
/// give one when the citizen is unsatisfied); a citizen's answer is taken as
/// it came, cut to the limit.
fn reason_given(outcome: RevisitOutcome, reason: &str, by: &Answerer) -> Result<String> {
    Ok(match (outcome, by) {
        (RevisitOutcome::Unsatisfied, Answerer::Agent(_)) if reason.trim().is_empty() => {
            return Err(Error::Invalid("an unsatisfied answer needs the citizen's reason (reason)".into()));
        }
        (_, Answerer::Agent(_)) => ReasonText::optional("reason", reason).map_err(|e| Error::Invalid(e.to_string()))?.into(),
        (RevisitOutcome::Unsatisfied, Answerer::Citizen) => ReasonText::citizen_unsatisfied(reason).into(),
        (_, Answerer::Citizen) => ReasonText::from_citizen(reason).into(),
    })
}

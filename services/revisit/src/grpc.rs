//! The agents' gRPC front: list due, claim, record, and the figures.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use whistle_domain::RevisitOutcome;
use whistle_domain::access::Caller;
use whistle_proto::v1::{self as pb, revisit_server::Revisit};
use whistle_runtime::auth::Tokens;

use crate::tasks::TaskRecord;
use crate::{Answerer, Core, Error, Next};

pub struct RevisitService {
    core: Arc<Core>,
    tokens: Tokens,
    /// Folds of the whole topic running at once (the figures of a period
    /// that is not whole days): each reads every event.
    folds: Arc<tokio::sync::Semaphore>,
}

/// The longest period figures are given for.
pub const MAX_PERIOD_DAYS: i64 = 400;
/// How many folds of the topic run at once; more wait their turn.
const CONCURRENT_FOLDS: usize = 2;
/// How long a fold waits for its turn before it is told to retry.
const FOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl RevisitService {
    pub fn new(core: Arc<Core>, tokens: Tokens) -> Self {
        RevisitService { core, tokens, folds: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FOLDS)) }
    }

    fn agent<T>(&self, req: &Request<T>) -> Result<String, Status> {
        match self.tokens.caller(req.metadata())? {
            Caller::Agent(a) => Ok(a),
            other => Err(Status::permission_denied(format!("{other} cannot work the revisit queue; an agent's token is needed"))),
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl RevisitService {
    /// A time as the city reads it, in RFC 3339.
    fn local(&self, t: time::OffsetDateTime) -> String {
        rfc3339(t.to_offset(self.core.calendar.offset()))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => Status::not_found(m),
            Error::Conflict(m) => Status::failed_precondition(m),
            Error::Invalid(m) => Status::invalid_argument(m),
            Error::Unavailable(m) => Status::unavailable(m),
            other => Status::unavailable(other.to_string()),
        }
    }
}

impl RevisitService {
    async fn view(&self, t: TaskRecord) -> Result<pb::RevisitTask, Status> {
        let claim = self.core.tasks().claim_of(&t.ticket_id).await.map_err(Error::from)?;
        let now = self.core.now();
        Ok(pb::RevisitTask {
            ticket_id: t.ticket_id.to_string(),
            ticket_number: t.number,
            unit: t.unit.to_string(),
            platform: t.platform.to_string(),
            category: t.category,
            language: t.language,
            result: t.result,
            due_at: self.local(t.due_at),
            attempts: t.attempts,
            max_attempts: self.core.max_attempts(),
            claimed_by: claim.as_ref().map(|c| c.agent.clone()).unwrap_or_default(),
            claimed_until: claim.map(|c| self.local(now + time::Duration::milliseconds(c.remaining_ms))).unwrap_or_default(),
            citizen_phone: t.phone.map(|p| p.expose().clone()).unwrap_or_default(),
            request_text: t.request_text,
        })
    }
}

#[tonic::async_trait]
impl Revisit for RevisitService {
    async fn list_due(&self, req: Request<pb::ListDueRequest>) -> Result<Response<pb::ListDueResponse>, Status> {
        let agent = self.agent(&req)?;
        let r = req.into_inner();
        let limit = if r.limit == 0 { 50 } else { r.limit.min(1000) } as usize;
        let until = (!r.include_later).then(|| self.core.now());
        // Read more than asked: some may be claimed by others.
        let due = self.core.tasks().due(until, limit * 2 + 10).await.map_err(Error::from)?;
        let mut tasks = Vec::new();
        for t in due {
            let view = self.view(t).await?;
            if !view.claimed_by.is_empty() && view.claimed_by != agent {
                continue;
            }
            tasks.push(view);
            if tasks.len() == limit {
                break;
            }
        }
        Ok(Response::new(pb::ListDueResponse { tasks }))
    }

    async fn claim(&self, req: Request<pb::RevisitRef>) -> Result<Response<pb::RevisitTask>, Status> {
        let agent = self.agent(&req)?;
        let id = self.core.resolve(&req.get_ref().ticket).await?;
        let task = self
            .core
            .tasks()
            .get(&id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Status::not_found(format!("ticket {} has no revisit waiting", req.get_ref().ticket)))?;
        if let Some(held) = self.core.tasks().claim(&id, &agent, self.core.claim_ms).await.map_err(Error::from)? {
            return Err(Status::failed_precondition(format!(
                "ticket {} is claimed by agent {} for {} s more",
                task.number,
                held.agent,
                held.remaining_ms / 1000
            )));
        }
        tracing::info!(ticket = %id, agent = %agent, "revisit claimed");
        Ok(Response::new(self.view(task).await?))
    }

    async fn record(&self, req: Request<pb::RecordRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        let agent = self.agent(&req)?;
        let r = req.into_inner();
        let outcome = RevisitOutcome::parse(r.outcome.trim()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let id = self.core.resolve(&r.ticket).await?;
        let done = self.core.record(&id, outcome, &r.reason, &Answerer::Agent(agent)).await?;
        let (next, next_due_at, rework_due_at) = match done.next {
            Next::Closed(_) => ("closed", String::new(), String::new()),
            Next::Retry { due_at } => ("retry", self.local(due_at), String::new()),
            Next::Reopened { due_at } => ("reopened", String::new(), self.local(due_at)),
        };
        Ok(Response::new(pb::RecordResponse {
            ticket_id: done.ticket_id.to_string(),
            ticket_number: done.number,
            next: next.into(),
            attempts: done.attempts,
            next_due_at,
            rework_due_at,
        }))
    }

    async fn figures(&self, req: Request<pb::FiguresRequest>) -> Result<Response<pb::FiguresResponse>, Status> {
        self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let offset = self.core.calendar.offset();
        let from = crate::figures::parse_instant("from", &r.from, offset)?;
        let to = crate::figures::parse_instant("to", &r.to, offset)?;
        if from >= to {
            return Err(Status::invalid_argument(format!(
                "the period is empty: from {} is not before to {}",
                self.local(from),
                self.local(to)
            )));
        }
        let days = (to - from).whole_days();
        if days > MAX_PERIOD_DAYS {
            return Err(Status::invalid_argument(format!(
                "the period is too long: at most {MAX_PERIOD_DAYS} days, asked {days} (from {} to {})",
                self.local(from),
                self.local(to)
            )));
        }
        // Whole days come from the daily tallies once they hold everything
        // the topic had when asked (and were not lost); any other period is
        // folded from the topic.
        let tally = &self.core.tally;
        let tallied = if tally.whole_days(from, to) && tally.alive().await? && tally.caught_up(std::time::Duration::from_secs(10)).await? {
            tally.query(from, to).await?
        } else {
            None
        };
        let (f, source) = match tallied {
            Some(f) => (f, "daily tallies"),
            None => {
                let _turn = tokio::time::timeout(FOLD_WAIT, self.folds.acquire())
                    .await
                    .map_err(|_| {
                        Status::resource_exhausted(format!(
                            "{CONCURRENT_FOLDS} figures are being folded from the events topic already; retry shortly, or ask whole days (answered from the daily tallies)"
                        ))
                    })?
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                (crate::figures::compute(&self.core.kafka, from, to).await?, "events topic")
            }
        };
        let rows = crate::figures::select(&f, r.scope.trim(), r.code.trim())?;
        Ok(Response::new(pb::FiguresResponse { from: self.local(from), to: self.local(to), rows, source: source.into() }))
    }
}

//! The follower of the events topic: a completed ticket opens its revisit
//! task, an unreachable try moves it, reopened and closed end it.

use crate::Result;
use crate::rules::Core;
use crate::tasks::TaskRecord;
use std::sync::Arc;
use whistle_domain::{EventKind, RevisitOutcome, TicketState};
use whistle_runtime::consumer::{HandleError, Handler, Incoming};

/// Follows the events topic: `completed` opens a task, an unreachable try
/// moves it to another day, `reopened` and `closed` end it.
pub(crate) struct Follow {
    pub(crate) core: Arc<Core>,
}

impl Handler for Follow {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let core = &self.core;
        if !matches!(
            event.kind,
            EventKind::Completed { .. } | EventKind::RevisitRecorded { .. } | EventKind::Reopened { .. } | EventKind::Closed { .. }
        ) {
            return Ok(());
        }
        // What the lifecycle refused changes no revisit.
        let Some(p) = core.store.accepted_at(&event, msg.offset).await? else { return Ok(()) };
        if let (EventKind::RevisitRecorded { .. }, TicketState::Completed { revisit_attempts, .. }) = (&event.kind, &p.ticket.state) {
            // The attempt's consequence (closed, reopened): published here
            // only, with ids derived from the attempt, so a redelivery
            // counts once.
            let (consequences, _) =
                core.consequences(&event, revisit_attempts.saturating_sub(1)).map_err(|e| HandleError::Poison(e.to_string()))?;
            let now = core.store.get(&event.ticket_id).await?;
            let pending: Vec<_> = consequences.into_iter().filter(|c| now.as_ref().is_none_or(|n| !n.applied.contains(&c.id))).collect();
            if !pending.is_empty() {
                core.publish_consequences(p.ticket.number.as_str(), &pending).await.map_err(|e| HandleError::Retry(e.to_string()))?;
            }
        }
        let due_at = match &event.kind {
            EventKind::Completed { .. } => core.rules.first_due(event.occurred_at, &core.calendar),
            EventKind::RevisitRecorded { outcome: RevisitOutcome::Unreachable, .. } => {
                core.rules.retry_at(event.occurred_at, &core.calendar)
            }
            EventKind::Reopened { .. } | EventKind::Closed { .. } => {
                core.tasks.remove(&event.ticket_id).await?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        match task_for(&p.ticket, due_at) {
            Some(rec) => core.tasks.upsert(&rec).await?,
            // Already past the revisit (a replay): nothing waits.
            None => core.tasks.remove(&p.ticket.id).await?,
        }
        Ok(())
    }
}

/// The revisit task of a ticket waiting for its revisit (state completed).
pub(crate) fn task_for(t: &whistle_domain::Ticket, due_at: time::OffsetDateTime) -> Option<TaskRecord> {
    let TicketState::Completed { assignment, result, revisit_attempts } = &t.state else { return None };
    Some(TaskRecord {
        ticket_id: t.id,
        number: t.number.to_string(),
        unit: assignment.unit.clone(),
        platform: assignment.platform.clone(),
        category: t.classification.as_ref().map_or("other", |c| c.category.as_str()).to_owned(),
        language: t.request.language.as_str().to_owned(),
        result: result.clone(),
        request_text: t.request.text.clone(),
        phone: t.request.contact.phone.as_ref().map(|p| whistle_domain::Sensitive::new(p.expose().to_owned())),
        due_at,
        attempts: *revisit_attempts,
        round: t.rework_count,
    })
}

//! Automatic routing, per platform instance. The city instance decides where
//! each classified ticket starts (the city's tier rules and the ticket's
//! jurisdiction): at the city it dispatches to the unit of the category,
//! elsewhere it delegates the ticket to that county's or street's platform.
//! A county or street instance dispatches what is delegated to it by its own
//! table, and leaves whistled tickets on its desk for an operator.
//!
//! Every instance reads the whole `ticket-events` topic and acts only on
//! events addressed to its platform.

use std::sync::Arc;
use whistle_domain::city::City;
use whistle_domain::{Actor, Clock, Deadline, DeadlinePolicy, Event, EventId, EventKind, PlatformId, TicketId, Urgency, WorkCalendar};
use whistle_runtime::consumer::{HandleError, Handler, Incoming};
use whistle_runtime::store::Projection;
use whistle_runtime::{EventProducer, TicketStore};

pub struct Router {
    platform: PlatformId,
    city: Arc<City>,
    policy: DeadlinePolicy,
    calendar: WorkCalendar,
    producer: EventProducer,
    store: TicketStore,
    clock: Arc<dyn Clock>,
    queue: tokio::sync::broadcast::Sender<whistle_proto::v1::QueueItem>,
}

impl Router {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platform: PlatformId,
        city: Arc<City>,
        policy: DeadlinePolicy,
        calendar: WorkCalendar,
        producer: EventProducer,
        store: TicketStore,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (queue, _) = tokio::sync::broadcast::channel(1024);
        Router { platform, city, policy, calendar, producer, store, clock, queue }
    }

    /// Changes to this platform's queue, as they happen.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<whistle_proto::v1::QueueItem> {
        self.queue.subscribe()
    }

    pub fn platform(&self) -> &PlatformId {
        &self.platform
    }

    /// Tells the desks watching this platform's queue.
    async fn announce(&self, msg: &Incoming, event: &Event) -> Result<(), HandleError> {
        if self.queue.receiver_count() == 0 {
            return Ok(());
        }
        let item = |kind: &str, from: String, reason: String, level: u32| whistle_proto::v1::QueueItem {
            ticket_id: event.ticket_id.to_string(),
            event: kind.to_owned(),
            reason,
            from,
            at: Some(whistle_proto::timestamp(event.occurred_at)),
            overdue_level: level,
        };
        let here = |p: &Projection| p.ticket.state.platform() == Some(&self.platform);
        let announced = match &event.kind {
            EventKind::Classified { triage: true, confidence, runners_up, .. } if self.platform == PlatformId::City => {
                let also: Vec<String> = runners_up.iter().map(|a| format!("{} {:.2}", a.category, a.probability)).collect();
                Some(item("triage", "classifier".into(), format!("confidence {confidence:.2}; also {}", also.join(", ")), 0))
            }
            EventKind::Delegated { from, to, reason } if *to == self.platform => {
                Some(item("delegated", from.to_string(), reason.clone(), 0))
            }
            EventKind::Whistled { from, to, reason } if *to == self.platform => Some(item("whistled", from.to_string(), reason.clone(), 0)),
            EventKind::Dispatched { platform, unit, .. } if *platform == self.platform => {
                Some(item("dispatched", unit.to_string(), String::new(), 0))
            }
            EventKind::Returned { reason } => {
                let p = self.store.accepted_at(event, msg.offset).await?;
                p.filter(here).map(|_| item("returned", event.actor.id.clone(), reason.clone(), 0))
            }
            EventKind::Overdue { level, unit, .. } => {
                let p = self.store.accepted_at(event, msg.offset).await?;
                p.filter(here).map(|_| item("overdue", unit.to_string(), String::new(), level.number()))
            }
            _ => None,
        };
        if let Some(i) = announced {
            let _ = self.queue.send(i);
        }
        Ok(())
    }

    pub fn policy(&self) -> &DeadlinePolicy {
        &self.policy
    }

    pub fn calendar(&self) -> &WorkCalendar {
        &self.calendar
    }

    pub fn city(&self) -> &City {
        &self.city
    }

    /// The deadline for a ticket of this urgency assigned at `now`.
    pub fn deadline(&self, urgency: Urgency, now: time::OffsetDateTime, version: EventId) -> Deadline {
        self.policy.deadline(&self.calendar, now, self.policy.span_for(urgency), version)
    }

    fn actor(&self) -> Actor {
        Actor::system(&format!("dispatcher:{}", self.platform))
    }

    async fn publish(&self, ticket: TicketId, id: EventId, kind: EventKind) -> Result<(), HandleError> {
        let out = Event { id, ticket_id: ticket, occurred_at: self.clock.now(), actor: self.actor(), kind };
        self.producer.publish(&out).await?;
        Ok(())
    }

    async fn dispatch_here(
        &self,
        ticket: TicketId,
        id: EventId,
        category: whistle_domain::Category,
        urgency: Urgency,
    ) -> Result<(), HandleError> {
        let Some(unit) = self.city.unit_for(&self.platform, category) else {
            tracing::info!(ticket = %ticket, platform = %self.platform, "no unit in the table; left on the desk");
            return Ok(());
        };
        let deadline = self.deadline(urgency, self.clock.now(), id);
        tracing::info!(ticket = %ticket, platform = %self.platform, unit = %unit, due_at = %deadline.due_at, "dispatched");
        self.publish(ticket, id, EventKind::Dispatched { platform: self.platform.clone(), unit, deadline, automatic: true }).await
    }
}

impl Handler for Router {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        self.announce(msg, &event).await?;
        match &event.kind {
            // A sure classification, or a desk's correction, is routed from
            // the top; an unsure one waits on the city desk's triage queue.
            EventKind::Classified { category, urgency, whistle_level, jurisdiction, triage: false, .. }
            | EventKind::Reclassified { category, urgency, whistle_level, jurisdiction, .. }
                if self.platform == PlatformId::City =>
            {
                let start = self.city.start_platform(*category, *whistle_level, jurisdiction);
                if start == PlatformId::City {
                    self.dispatch_here(event.ticket_id, EventId::derived(&event.id, "dispatched"), *category, *urgency).await
                } else {
                    tracing::info!(ticket = %event.ticket_id, to = %start, "delegated");
                    let kind = EventKind::Delegated { from: PlatformId::City, to: start, reason: "routing rules".into() };
                    self.publish(event.ticket_id, EventId::derived(&event.id, "delegated"), kind).await
                }
            }
            EventKind::Delegated { to, .. } if *to == self.platform => {
                let Some(p) = self.store.accepted_at(&event, msg.offset).await? else { return Ok(()) };
                let Some(c) = p.ticket.classification.as_ref() else { return Ok(()) };
                self.dispatch_here(event.ticket_id, EventId::derived(&event.id, "dispatched"), c.category, c.urgency).await
            }
            _ => Ok(()),
        }
    }
}

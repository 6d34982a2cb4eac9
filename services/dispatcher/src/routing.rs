//! Automatic dispatch: a classified ticket goes to the unit the routing table
//! names for its category, with the deadline the policy gives its urgency.

use std::sync::Arc;
use whistle_domain::city::City;
use whistle_domain::{
    Actor, Category, Clock, Deadline, DeadlinePolicy, Event, EventId, EventKind, PlatformId, UnitCode, Urgency, WorkCalendar,
};
use whistle_runtime::EventProducer;
use whistle_runtime::consumer::{HandleError, Handler, Incoming};

pub struct Router {
    city: Arc<City>,
    policy: DeadlinePolicy,
    calendar: WorkCalendar,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
}

impl Router {
    pub fn new(city: Arc<City>, policy: DeadlinePolicy, calendar: WorkCalendar, producer: EventProducer, clock: Arc<dyn Clock>) -> Self {
        Router { city, policy, calendar, producer, clock }
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

    /// The unit that handles a category at the city platform.
    pub fn unit_for(&self, category: Category) -> &UnitCode {
        self.city.config.routing.city.get(&category).unwrap_or(&self.city.config.routing.default_unit)
    }

    /// The deadline for a ticket of this urgency assigned at `now`.
    pub fn deadline(&self, urgency: Urgency, now: time::OffsetDateTime, version: EventId) -> Deadline {
        self.policy.deadline(&self.calendar, now, self.policy.span_for(urgency), version)
    }
}

impl Handler for Router {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let EventKind::Classified { category, urgency, .. } = &event.kind else {
            return Ok(());
        };
        let id = EventId::derived(&event.id, "dispatched");
        let now = self.clock.now();
        let unit = self.unit_for(*category).clone();
        let deadline = self.deadline(*urgency, now, id);
        tracing::info!(ticket = %event.ticket_id, unit = %unit, due_at = %deadline.due_at, "dispatched");
        let out = Event {
            id,
            ticket_id: event.ticket_id,
            occurred_at: now,
            actor: Actor::system("dispatcher:city"),
            kind: EventKind::Dispatched { platform: PlatformId::City, unit, deadline, automatic: true },
        };
        self.producer.publish(&out).await?;
        Ok(())
    }
}

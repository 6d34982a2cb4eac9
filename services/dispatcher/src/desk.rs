//! The desk API of a platform. Every call is authenticated (a token bound to
//! a platform or a unit) and authorized by the domain's access rules; status
//! codes are mapped here, in one place.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use whistle_domain::access::{Caller, DeskAction, authorize};
use whistle_domain::city::City;
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, PlatformId, UnitCode};
use whistle_proto::v1::{self as pb, desk_server::Desk};
use whistle_runtime::store::Projection;
use whistle_runtime::{EventProducer, TicketStore};

use crate::auth::Tokens;

/// Longest result text a unit may report.
const MAX_RESULT_CHARS: usize = 2000;

pub struct DeskService {
    platform: PlatformId,
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    tokens: Tokens,
    city: Arc<City>,
}

impl DeskService {
    pub fn new(
        platform: PlatformId,
        store: TicketStore,
        producer: EventProducer,
        clock: Arc<dyn Clock>,
        tokens: Tokens,
        city: Arc<City>,
    ) -> Self {
        DeskService { platform, store, producer, clock, tokens, city }
    }

    async fn ticket(&self, key: &str) -> Result<Projection, Status> {
        self.store
            .find(key.trim())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("ticket {key} is not known")))
    }

    /// Refuses, and logs, a call the access rules deny.
    fn check(&self, caller: &Caller, action: DeskAction, p: &Projection) -> Result<(), Status> {
        authorize(caller, action, &p.ticket, |u| self.city.unit(u).map(|u| u.platform.clone())).map_err(|d| {
            tracing::warn!(caller = %caller, ticket = %p.ticket.id, action = action.as_str(), rule = d.rule, "desk call denied");
            Status::permission_denied(d.to_string())
        })
    }
}

fn invalid(e: whistle_domain::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl Desk for DeskService {
    async fn complete(&self, req: Request<pb::CompleteRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let result = r.result.trim();
        if result.is_empty() {
            return Err(invalid(whistle_domain::Error::invalid("result", "must not be empty")));
        }
        if result.chars().count() > MAX_RESULT_CHARS {
            return Err(invalid(whistle_domain::Error::invalid("result", format!("longer than {MAX_RESULT_CHARS} characters"))));
        }
        let Caller::Unit(unit) = &caller else {
            return Err(Status::permission_denied(format!("{caller} may not complete tickets: this is a responsible unit's action")));
        };
        if !r.unit.is_empty() && UnitCode::parse(&r.unit).map_err(invalid)? != *unit {
            return Err(Status::permission_denied(format!("the token is for {caller}, not unit {}", r.unit)));
        }
        let p = self.ticket(&r.ticket).await?;
        self.check(&caller, DeskAction::Complete, &p)?;
        if let Some(a) = p.ticket.state.open_assignment()
            && a.platform != self.platform
        {
            return Err(Status::permission_denied(format!(
                "ticket {} is held by platform {}, not {}",
                p.ticket.number, a.platform, self.platform
            )));
        }
        let event = Event {
            id: EventId::new(),
            ticket_id: p.ticket.id,
            occurred_at: self.clock.now(),
            actor: Actor::unit(unit),
            kind: EventKind::Completed { result: result.to_owned() },
        };
        // The lifecycle decides whether completion is allowed now.
        let mut check = p.ticket.clone();
        check.apply(&event).map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.producer.publish(&event).await.map_err(|e| Status::unavailable(format!("could not record the completion: {e}")))?;
        tracing::info!(ticket = %p.ticket.id, unit = %unit, "completed");
        Ok(Response::new(pb::ActionResponse { ticket_id: p.ticket.id.to_string(), event_id: event.id.to_string() }))
    }
}

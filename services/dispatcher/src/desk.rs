//! The desk API of a platform. Status codes are mapped here, in one place.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, PlatformId, UnitCode};
use whistle_proto::v1::{self as pb, desk_server::Desk};
use whistle_runtime::{EventProducer, TicketStore};

/// Longest result text a unit may report.
const MAX_RESULT_CHARS: usize = 2000;

pub struct DeskService {
    platform: PlatformId,
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
}

impl DeskService {
    pub fn new(platform: PlatformId, store: TicketStore, producer: EventProducer, clock: Arc<dyn Clock>) -> Self {
        DeskService { platform, store, producer, clock }
    }
}

fn invalid(e: whistle_domain::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl Desk for DeskService {
    async fn complete(&self, req: Request<pb::CompleteRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let r = req.into_inner();
        let unit = UnitCode::parse(&r.unit).map_err(invalid)?;
        let result = r.result.trim();
        if result.is_empty() {
            return Err(invalid(whistle_domain::Error::invalid("result", "must not be empty")));
        }
        if result.chars().count() > MAX_RESULT_CHARS {
            return Err(invalid(whistle_domain::Error::invalid("result", format!("longer than {MAX_RESULT_CHARS} characters"))));
        }
        let p = self
            .store
            .find(r.ticket.trim())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("ticket {} is not known", r.ticket)))?;
        if let Some(a) = p.ticket.state.open_assignment() {
            if a.unit != unit {
                tracing::warn!(ticket = %p.ticket.id, unit = %unit, "completion by a unit the ticket is not assigned to");
                return Err(Status::permission_denied(format!("ticket {} is assigned to {}, not {unit}", p.ticket.number, a.unit)));
            }
            if a.platform != self.platform {
                return Err(Status::permission_denied(format!(
                    "ticket {} is held by platform {}, not {}",
                    p.ticket.number, a.platform, self.platform
                )));
            }
        }
        let event = Event {
            id: EventId::new(),
            ticket_id: p.ticket.id,
            occurred_at: self.clock.now(),
            actor: Actor::unit(&unit),
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

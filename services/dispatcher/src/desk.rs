//! The desk API of a platform. Every call is authenticated (a token bound to
//! a platform or a unit), authorized by the domain's access rules, checked
//! against the ticket's lifecycle, and recorded as an event with its actor
//! and time (the audit trail). Status codes are mapped here, in one place.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use whistle_domain::access::{Caller, DeskAction, authorize, authorize_kind, authorize_watch};
use whistle_domain::event::ExtensionDecision;
use whistle_domain::queue::{DeskPlace, QueueGroup, offers};
use whistle_domain::{Actor, Clock, Event, EventId, EventKind, Jurisdiction, PlatformId, QueueReason, ReasonText, TicketState, UnitCode};
use whistle_proto::v1::{self as pb, desk_server::Desk};
use whistle_proto::{timestamp, to_datetime};
use whistle_runtime::store::{CaughtUp, Projection};
use whistle_runtime::{EventProducer, TicketStore};

use crate::auth::Tokens;
use crate::routing::Router;

pub struct DeskService {
    platform: PlatformId,
    store: TicketStore,
    producer: EventProducer,
    clock: Arc<dyn Clock>,
    tokens: Tokens,
    router: Arc<Router>,
    shutdown: whistle_runtime::Shutdown,
}

fn invalid(e: whistle_domain::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The value a field names, or `keep` when it is left empty.
fn or_keep<T>(s: &str, keep: T, parse: impl Fn(&str) -> whistle_domain::Result<T>) -> Result<T, Status> {
    let s = s.trim();
    if s.is_empty() { Ok(keep) } else { parse(s).map_err(invalid) }
}

fn text(field: &'static str, s: &str) -> Result<String, Status> {
    ReasonText::parse(field, s).map(String::from).map_err(invalid)
}

impl DeskService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platform: PlatformId,
        store: TicketStore,
        producer: EventProducer,
        clock: Arc<dyn Clock>,
        tokens: Tokens,
        router: Arc<Router>,
        shutdown: whistle_runtime::Shutdown,
    ) -> Self {
        DeskService { platform, store, producer, clock, tokens, router, shutdown }
    }

    /// The ticket `key` names, once the access rules let `caller` do
    /// `action` to it: nothing about its state is told before that.
    async fn ticket(&self, caller: &Caller, action: DeskAction, key: &str) -> Result<Projection, Status> {
        authorize_kind(caller, action).map_err(|d| {
            tracing::warn!(caller = %caller, action = action.as_str(), rule = d.rule, "desk call denied");
            Status::permission_denied(d.to_string())
        })?;
        let p = self
            .store
            .find(key.trim())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("ticket {key} is not known")))?;
        authorize(caller, action, &p.ticket, |u| self.router.city().unit(u).map(|u| u.platform.clone())).map_err(|d| {
            tracing::warn!(caller = %caller, ticket = %p.ticket.id, action = action.as_str(), rule = d.rule, "desk call denied");
            Status::permission_denied(d.to_string())
        })?;
        Ok(p)
    }

    /// Checks the ticket is held here and the lifecycle allows the event
    /// (the caller was authorized when the ticket was read), and records it.
    async fn act(
        &self,
        caller: &Caller,
        action: DeskAction,
        p: &Projection,
        id: EventId,
        kind: EventKind,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        if let Some(holder) = p.ticket.state.platform()
            && *holder != self.platform
        {
            return Err(Status::permission_denied(format!(
                "ticket {} is held by platform {holder}, not {}",
                p.ticket.number, self.platform
            )));
        }
        let actor = match caller {
            Caller::Unit(u) => Actor::unit(u),
            Caller::Platform(pl) => Actor::operator(&format!("desk:{pl}")),
            Caller::Agent(a) => Actor::agent(a),
        };
        let event = Event { id, ticket_id: p.ticket.id, occurred_at: self.clock.now(), actor, kind };
        let mut next = p.ticket.clone();
        next.apply(&event).map_err(|e| Status::failed_precondition(e.to_string()))?;
        let at = self
            .producer
            .publish(&event)
            .await
            .map_err(|e| Status::unavailable(format!("could not record the {}: {e}", action.as_str())))?;
        tracing::info!(ticket = %p.ticket.id, caller = %caller, event = event.kind.name(), "desk action");
        if let Some(rule) = self.visible(&event, at.offset).await {
            // The snapshot checked above was stale: the lifecycle, which
            // saw everything before this event, refused it.
            return Err(Status::failed_precondition(format!(
                "the ticket changed meanwhile; the {} was refused by the ticket lifecycle: {rule}",
                action.as_str()
            )));
        }
        Ok(Response::new(pb::ActionResponse { ticket_id: p.ticket.id.to_string(), event_id: event.id.to_string() }))
    }

    /// Read your writes: answer once the ticket's projection shows the event,
    /// so the next call (and `GetTicket`) sees it; the rule it was refused
    /// with, if it was. The event is durable either way; after 5 s the
    /// answer goes out regardless.
    async fn visible(&self, event: &Event, offset: i64) -> Option<String> {
        let ticket = &event.ticket_id;
        match self.store.wait_caught_up(ticket, offset, std::time::Duration::from_secs(5)).await {
            Ok(CaughtUp::Ready(p)) => p.refused(&event.id).map(str::to_owned),
            Ok(CaughtUp::Orphan) => None,
            Ok(CaughtUp::Behind) => {
                tracing::warn!(ticket = %ticket, offset, "the projection is behind; answering anyway");
                None
            }
            Err(e) => {
                tracing::warn!(ticket = %ticket, error = %e, "cannot read the projection");
                None
            }
        }
    }

    fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// A jurisdiction an operator typed, checked against the city file:
    /// the levels above a street or community are filled in, and must agree.
    fn jurisdiction(&self, county: &str, street: &str, community: &str) -> Result<Jurisdiction, Status> {
        let city = self.router.city();
        let bad = |field: &'static str, reason: String| invalid(whistle_domain::Error::invalid(field, reason));
        let mut street = (!street.is_empty()).then(|| street.to_owned());
        if !community.is_empty() {
            let of = city.street_of(community).ok_or_else(|| bad("community", format!("unknown community {community:?}")))?;
            if street.as_deref().is_some_and(|s| s != of) {
                return Err(bad("community", format!("community {community:?} belongs to street {of:?}, not {street:?}")));
            }
            street = Some(of.to_owned());
        }
        let mut county = (!county.is_empty()).then(|| county.to_owned());
        if let Some(s) = &street {
            let of = city.county_of(s).ok_or_else(|| bad("street", format!("unknown street {s:?}")))?;
            if county.as_deref().is_some_and(|c| c != of) {
                return Err(bad("street", format!("street {s:?} belongs to county {of:?}, not {county:?}")));
            }
            county = Some(of.to_owned());
        }
        if let Some(c) = &county
            && !city.has_platform(&PlatformId::County(c.clone()))
        {
            return Err(bad("county", format!("unknown county {c:?}")));
        }
        Ok(Jurisdiction { county, street, community: (!community.is_empty()).then(|| community.to_owned()) })
    }
}

#[tonic::async_trait]
impl Desk for DeskService {
    async fn complete(&self, req: Request<pb::CompleteRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let result = text("result", &r.result)?;
        if let Caller::Unit(unit) = &caller
            && !r.unit.is_empty()
            && UnitCode::parse(&r.unit).map_err(invalid)? != *unit
        {
            return Err(Status::permission_denied(format!("the token is for {caller}, not unit {}", r.unit)));
        }
        let p = self.ticket(&caller, DeskAction::Complete, &r.ticket).await?;
        self.act(&caller, DeskAction::Complete, &p, EventId::new(), EventKind::Completed { result }).await
    }

    async fn acknowledge(&self, req: Request<pb::TicketRef>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let p = self.ticket(&caller, DeskAction::Acknowledge, &req.into_inner().ticket).await?;
        self.act(&caller, DeskAction::Acknowledge, &p, EventId::new(), EventKind::Acknowledged).await
    }

    async fn r#return(&self, req: Request<pb::ReasonRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let reason = text("reason", &r.reason)?;
        let p = self.ticket(&caller, DeskAction::Return, &r.ticket).await?;
        if let Some(a) = p.ticket.state.open_assignment() {
            let policy = self.router.policy();
            let closes = policy.return_closes_at(self.router.calendar(), a.assigned_at);
            if self.now() > closes {
                return Err(Status::failed_precondition(format!(
                    "ticket {} can no longer be returned: the return window ({}) closed at {closes}",
                    p.ticket.number, policy.return_window
                )));
            }
        }
        self.act(&caller, DeskAction::Return, &p, EventId::new(), EventKind::Returned { reason }).await
    }

    async fn dispatch(&self, req: Request<pb::DispatchRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let unit_code = UnitCode::parse(&r.unit).map_err(invalid)?;
        let unit = self
            .router
            .city()
            .unit(&unit_code)
            .ok_or_else(|| invalid(whistle_domain::Error::invalid("unit", format!("unknown unit {unit_code}"))))?;
        if unit.platform != self.platform {
            return Err(invalid(whistle_domain::Error::invalid(
                "unit",
                format!("unit {unit_code} belongs to platform {}, not {}", unit.platform, self.platform),
            )));
        }
        let p = self.ticket(&caller, DeskAction::Dispatch, &r.ticket).await?;
        let urgency = p
            .ticket
            .classification
            .as_ref()
            .map(|c| c.urgency)
            .ok_or_else(|| Status::failed_precondition("the ticket is not classified yet"))?;
        let id = EventId::new();
        let deadline = self.router.deadline(urgency, self.now(), id);
        let kind = EventKind::Dispatched { platform: self.platform.clone(), unit: unit_code, deadline, automatic: false };
        self.act(&caller, DeskAction::Dispatch, &p, id, kind).await
    }

    async fn request_extension(&self, req: Request<pb::ExtensionRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let reason = text("reason", &r.reason)?;
        let requested_due = r
            .requested_due_at
            .as_ref()
            .ok_or_else(|| invalid(whistle_domain::Error::invalid("requested_due_at", "is required")))
            .and_then(|t| to_datetime(t).map_err(|e| invalid(whistle_domain::Error::invalid("requested_due_at", e.to_string()))))?;
        let p = self.ticket(&caller, DeskAction::RequestExtension, &r.ticket).await?;
        self.act(&caller, DeskAction::RequestExtension, &p, EventId::new(), EventKind::ExtensionRequested { reason, requested_due }).await
    }

    async fn decide_extension(&self, req: Request<pb::ExtensionDecision>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let p = self.ticket(&caller, DeskAction::DecideExtension, &r.ticket).await?;
        let id = EventId::new();
        let note = ReasonText::optional("note", &r.note).map_err(invalid)?.into();
        let decision = if r.grant {
            let due_at = r
                .due_at
                .as_ref()
                .ok_or_else(|| invalid(whistle_domain::Error::invalid("due_at", "is required to grant an extension")))
                .and_then(|t| to_datetime(t).map_err(|e| invalid(whistle_domain::Error::invalid("due_at", e.to_string()))))?;
            let current = p
                .ticket
                .state
                .open_assignment()
                .map(|a| a.deadline)
                .ok_or_else(|| Status::failed_precondition("the ticket is not in a unit's hands"))?;
            let urgency = p.ticket.classification.as_ref().map_or(whistle_domain::Urgency::Ordinary, |c| c.urgency);
            let deadline =
                self.router.policy().extend(self.router.calendar(), &current, urgency, self.now(), due_at, id).map_err(invalid)?;
            ExtensionDecision::Granted { deadline, note }
        } else {
            ExtensionDecision::Refused { note }
        };
        self.act(&caller, DeskAction::DecideExtension, &p, id, EventKind::ExtensionDecided(decision)).await
    }

    async fn supervise(&self, req: Request<pb::ReasonRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let reason = text("reason", &r.reason)?;
        let p = self.ticket(&caller, DeskAction::Supervise, &r.ticket).await?;
        self.act(&caller, DeskAction::Supervise, &p, EventId::new(), EventKind::Supervised { reason }).await
    }

    async fn whistle(&self, req: Request<pb::ReasonRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let reason = text("reason", &r.reason)?;
        let p = self.ticket(&caller, DeskAction::Whistle, &r.ticket).await?;
        let to = self
            .router
            .city()
            .parent(&self.platform)
            .ok_or_else(|| Status::failed_precondition("the city platform has no tier above to whistle to"))?;
        self.act(&caller, DeskAction::Whistle, &p, EventId::new(), EventKind::Whistled { from: self.platform.clone(), to, reason }).await
    }

    async fn report_in(&self, req: Request<pb::TicketRef>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let p = self.ticket(&caller, DeskAction::ReportIn, &req.into_inner().ticket).await?;
        // authorize lets only units report in; this names which one.
        let Caller::Unit(unit) = &caller else { return Err(Status::permission_denied("only a unit reports in")) };
        self.act(&caller, DeskAction::ReportIn, &p, EventId::new(), EventKind::ReportedIn { unit: unit.clone() }).await
    }

    async fn delegate(&self, req: Request<pb::DelegateRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let reason = text("reason", &r.reason)?;
        let p = self.ticket(&caller, DeskAction::Dispatch, &r.ticket).await?;
        let to = PlatformId::parse(&r.platform).map_err(invalid)?;
        if self.router.city().parent(&to).as_ref() != Some(&self.platform) {
            return Err(invalid(whistle_domain::Error::invalid(
                "platform",
                format!("{to} is not a platform directly below {}", self.platform),
            )));
        }
        self.act(&caller, DeskAction::Dispatch, &p, EventId::new(), EventKind::Delegated { from: self.platform.clone(), to, reason }).await
    }

    async fn reclassify(&self, req: Request<pb::ReclassifyRequest>) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let p = self.ticket(&caller, DeskAction::Reclassify, &r.ticket).await?;
        let reason = text("reason", &r.reason)?;
        let current = p.ticket.classification.clone().ok_or_else(|| Status::failed_precondition("the ticket is not classified yet"))?;
        let category = or_keep(&r.category, current.category, whistle_domain::Category::parse)?;
        let urgency = or_keep(&r.urgency, current.urgency, whistle_domain::Urgency::parse)?;
        let whistle_level = or_keep(&r.whistle_level, current.whistle_level, whistle_domain::WhistleLevel::parse)?;
        let jurisdiction = if [&r.county, &r.street, &r.community].iter().all(|s| s.trim().is_empty()) {
            current.jurisdiction
        } else {
            self.jurisdiction(r.county.trim(), r.street.trim(), r.community.trim())?
        };
        let kind = EventKind::Reclassified { category, urgency, whistle_level, jurisdiction, reason };
        self.act(&caller, DeskAction::Reclassify, &p, EventId::new(), kind).await
    }

    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::QueueItem, Status>> + Send>>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        authorize_watch(&caller, &self.platform).map_err(|d| {
            tracing::warn!(caller = %caller, platform = %self.platform, rule = d.rule, "queue watch denied");
            Status::permission_denied(d.to_string())
        })?;
        let rx = self.router.watch();
        let stream = tokio_stream::StreamExt::filter_map(tokio_stream::wrappers::BroadcastStream::new(rx), |r| r.ok().map(Ok));
        // The stream ends when the service drains, so shutdown never waits on a watcher.
        let shutdown = self.shutdown.clone();
        let stream = futures::StreamExt::take_until(stream, async move { shutdown.wait().await });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn queue(&self, req: Request<pb::QueueRequest>) -> Result<Response<pb::QueueResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let r = req.into_inner();
        let most = if r.open { MAX_OPEN } else { MAX_QUEUE };
        let limit = match r.limit {
            0 => most,
            n => (n as usize).min(most),
        };
        let unavailable = |e: whistle_runtime::Error| Status::unavailable(e.to_string());
        let entries = if let Caller::Unit(unit) = &caller {
            // A unit's list: what it is working, wherever it was dispatched from.
            self.store
                .worked_by(unit, limit)
                .await
                .map_err(unavailable)?
                .iter()
                .filter_map(|p| p.ticket.work().map(|(_, group, at)| entry(p, group, at)))
                .collect()
        } else {
            authorize_watch(&caller, &self.platform).map_err(|d| Status::permission_denied(d.to_string()))?;
            if r.open {
                self.store
                    .held_by(&self.platform, limit)
                    .await
                    .map_err(unavailable)?
                    .iter()
                    .filter_map(|p| {
                        let (_, at) = p.ticket.held()?;
                        Some(entry(p, p.ticket.waiting().map_or(QueueGroup::InHand, |w| w.group), at))
                    })
                    .collect()
            } else {
                self.store
                    .waiting_on(&self.platform, limit)
                    .await
                    .map_err(unavailable)?
                    .iter()
                    .filter_map(|p| p.ticket.waiting().map(|w| entry(p, w.group, w.sort_at)))
                    .collect()
            }
        };
        Ok(Response::new(pb::QueueResponse { entries }))
    }

    async fn get(&self, req: Request<pb::TicketRef>) -> Result<Response<pb::DeskTicket>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let p = self.ticket(&caller, DeskAction::Read, &req.into_inner().ticket).await?;
        let city = self.router.city();
        let unit_platform = |u: &UnitCode| city.unit(u).map(|u| u.platform.clone());
        let place = DeskPlace {
            platform: &self.platform,
            parent: city.parent(&self.platform),
            children: city.children(&self.platform),
            units: city.units_of(&self.platform).map(|u| u.code.clone()).collect(),
            unit_platform: &unit_platform,
        };
        let t = &p.ticket;
        let actions = offers(&caller, t, &place, self.now()).into_iter().map(|o| o.as_str().to_owned()).collect();
        let queue_reason = match &t.state {
            TicketState::Queued { reason, .. } => match reason {
                QueueReason::Triage => String::new(),
                QueueReason::Delegated { reason, .. } | QueueReason::Returned { reason, .. } | QueueReason::Whistled { reason, .. } => {
                    reason.clone()
                }
            },
            TicketState::Received
            | TicketState::Classified
            | TicketState::Assigned(_)
            | TicketState::Acknowledged(_)
            | TicketState::Completed { .. }
            | TicketState::Closed { .. } => String::new(),
        };
        Ok(Response::new(pb::DeskTicket {
            ticket: Some(whistle_proto::ticket_view(t)),
            phone_masked: t.request.contact.phone.as_ref().map(|p| p.masked()).unwrap_or_default(),
            address: t.request.location.address.clone(),
            history: history(&p),
            actions,
            group: t.waiting().map(|w| w.group.as_str().to_owned()).unwrap_or_default(),
            queue_reason,
            extension_requested: t.state.open_assignment().is_some_and(|a| a.extension_requested),
        }))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let (kind, id, platform) = match &caller {
            Caller::Platform(p) => ("platform", p.to_string(), p.to_string()),
            Caller::Unit(u) => (
                "unit",
                u.to_string(),
                self.router
                    .city()
                    .unit(u)
                    .map(|u| u.platform.to_string())
                    .ok_or_else(|| Status::failed_precondition(format!("unit {u} has a token but is not in the city file")))?,
            ),
            Caller::Agent(a) => ("agent", a.clone(), String::new()),
        };
        Ok(Response::new(pb::WhoAmIResponse { kind: kind.to_owned(), id, platform }))
    }

    async fn hot_issues(&self, req: Request<pb::HotIssuesRequest>) -> Result<Response<pb::HotIssuesResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        authorize_kind(&caller, DeskAction::Read).map_err(|d| Status::permission_denied(d.to_string()))?;
        Ok(Response::new(crate::hot::answer(&self.store, &self.router, &caller, req.into_inner()).await?))
    }

    async fn history(&self, req: Request<pb::TicketRef>) -> Result<Response<pb::HistoryResponse>, Status> {
        let caller = self.tokens.caller(req.metadata())?;
        let p = self.ticket(&caller, DeskAction::Read, &req.into_inner().ticket).await?;
        Ok(Response::new(pb::HistoryResponse { ticket_id: p.ticket.id.to_string(), entries: history(&p) }))
    }
}

fn entry(p: &Projection, group: QueueGroup, at: time::OffsetDateTime) -> pb::QueueEntry {
    pb::QueueEntry { ticket: Some(whistle_proto::ticket_view(&p.ticket)), group: group.as_str().to_owned(), sort_at: Some(timestamp(at)) }
}

/// The most a queue snapshot holds.
const MAX_QUEUE: usize = 500;
/// The most open tickets one answer holds (a map's worth).
const MAX_OPEN: usize = 5000;

fn history(p: &Projection) -> Vec<pb::HistoryEntry> {
    p.history
        .iter()
        .map(|h| pb::HistoryEntry {
            event_id: h.event_id.to_string(),
            event: h.event.clone(),
            at: Some(timestamp(h.at)),
            actor_kind: h.actor.kind.as_str().to_owned(),
            actor_id: h.actor.id.clone(),
            refused: h.refused.clone().unwrap_or_default(),
        })
        .collect()
}

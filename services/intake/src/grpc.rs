//! The `Intake` gRPC service. Status codes are mapped here, in one place.

use tonic::{Request, Response, Status};
use whistle_domain::RequestFields;
use whistle_proto::v1::{self as pb, intake_server::Intake};
use whistle_runtime::TicketStore;

use crate::numbers::{RegisterError, Registrar};

pub struct IntakeService {
    registrar: Registrar,
    store: TicketStore,
    tokens: whistle_runtime::auth::Tokens,
}

impl IntakeService {
    pub fn new(registrar: Registrar, store: TicketStore, tokens: whistle_runtime::auth::Tokens) -> Self {
        IntakeService { registrar, store, tokens }
    }
}

/// Whether `phone` is the citizen's phone on the ticket (compared in
/// constant time, after the same normalization).
fn same_phone(ticket: &whistle_domain::Ticket, phone: &str) -> bool {
    match (&ticket.request.contact.phone, whistle_domain::PhoneNumber::parse(phone)) {
        (Some(theirs), Ok(given)) => whistle_runtime::config::same_secret(theirs.expose().as_bytes(), given.expose().as_bytes()),
        _ => false,
    }
}

/// `INVALID_ARGUMENT` naming the field, also in the `x-whistle-field` metadata.
pub fn invalid(e: whistle_domain::Error) -> Status {
    let mut status = Status::invalid_argument(e.to_string());
    if let Some(field) = e.field()
        && let Ok(v) = field.parse()
    {
        status.metadata_mut().insert("x-whistle-field", v);
    }
    status
}

fn register_status(e: RegisterError) -> Status {
    match e {
        RegisterError::Busy => Status::aborted(e.to_string()),
        RegisterError::Unavailable(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl Intake for IntakeService {
    async fn submit_request(&self, req: Request<pb::SubmitRequestRequest>) -> Result<Response<pb::SubmitRequestResponse>, Status> {
        let r = req.into_inner();
        let request = RequestFields {
            channel: r.channel,
            external_id: r.external_id,
            text: r.text,
            address: r.address,
            lat: r.lat,
            lon: r.lon,
            citizen_name: r.citizen_name,
            citizen_phone: r.citizen_phone,
            citizen_email: r.citizen_email,
            language: r.language,
            ..RequestFields::default()
        }
        .validate()
        .map_err(invalid)?;
        let done = self.registrar.register(request).await.map_err(register_status)?;
        Ok(Response::new(pb::SubmitRequestResponse {
            ticket_id: done.ticket_id.to_string(),
            ticket_number: done.number.to_string(),
            duplicate: done.duplicate,
        }))
    }

    async fn get_ticket(&self, req: Request<pb::GetTicketRequest>) -> Result<Response<pb::TicketView>, Status> {
        let signed = self.tokens.caller(req.metadata()).is_ok();
        let r = req.into_inner();
        // A ticket id is a secret of whoever was given it; a number is not:
        // without a token, it needs the citizen's phone.
        let by_number = !r.ticket.trim().is_empty() && whistle_domain::TicketId::parse(r.ticket.trim()).is_err();
        let needs_phone = by_number && !signed;
        if needs_phone && r.phone.trim().is_empty() {
            return Err(Status::permission_denied(
                "a ticket number alone proves nothing: give the citizen's phone (phone), or call with a token of [intake] tokens",
            ));
        }
        let key = if !r.ticket.trim().is_empty() {
            r.ticket.trim().to_owned()
        } else if !r.channel.is_empty() && !r.external_id.is_empty() {
            match self.registrar.lookup(&r.channel, &r.external_id).await {
                Ok(Some(id)) => id.to_string(),
                Ok(None) => {
                    return Err(Status::not_found(format!("no ticket for {} request {}", r.channel, r.external_id)));
                }
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        } else {
            return Err(Status::invalid_argument("ticket: give a ticket number or ticket id, or channel and external_id"));
        };
        match self.store.find(&key).await {
            // A wrong phone gets the answer an unknown number gets.
            Ok(Some(p)) if needs_phone && !same_phone(&p.ticket, &r.phone) => {
                Err(Status::not_found(format!("no ticket {key} with that phone")))
            }
            Ok(Some(p)) => Ok(Response::new(whistle_proto::ticket_view(&p.ticket))),
            Ok(None) if needs_phone => Err(Status::not_found(format!("no ticket {key} with that phone"))),
            Ok(None) => Err(Status::not_found(format!("ticket {key} is not known"))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

//! The event consumer's handler: the messages an event produces, each
//! delivered, a refused one dead-lettered without holding back the others.

use crate::delivery::{Deliverer, Undelivered};
use crate::{Result, i18n, messages};
use std::sync::Arc;
use whistle_domain::TicketId;
use whistle_runtime::config::RevisitLink;
use whistle_runtime::consumer::{HandleError, Handler, Incoming};

pub(crate) struct Notify {
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) catalog: Arc<i18n::Catalog>,
    pub(crate) revisit: RevisitLink,
    pub(crate) offset: time::UtcOffset,
}

impl Handler for Notify {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        let d = &self.deliverer;
        let projection = if messages::needs_ticket(&event) {
            match d.store.accepted_at(&event, msg.offset).await? {
                Some(p) => Some(p),
                // Refused by the lifecycle: nobody is told.
                None => return Ok(()),
            }
        } else {
            None
        };
        let messages = {
            let link = |t: &TicketId| self.revisit.url(t);
            let ctx = messages::Context {
                catalog: &self.catalog,
                leader_of: &|p| d.directory.leader_of(p),
                language_of: &|r| d.directory.language_of(r),
                contact_categories: &d.settings.contact_categories,
                revisit_link: &link,
                offset: self.offset,
            };
            messages::for_event(&event, projection.as_ref().map(|p| &p.ticket), &ctx)
        };
        // A refused message does not hold back the others of the event; the
        // dead letter names every one that failed (a replay sends only those:
        // the delivered ones are marked).
        let mut refused = Vec::new();
        for m in messages {
            match d.deliver(&m).await {
                Ok(()) => {}
                Err(Undelivered::Wait(reason)) => return Err(HandleError::Retry(reason)),
                Err(Undelivered::Give(reason)) => refused.push(reason),
            }
        }
        if refused.is_empty() { Ok(()) } else { Err(HandleError::Poison(refused.join("; "))) }
    }
}

//! The projector: folds every ticket event into the ticket's current state in
//! Redis. Redelivered events change nothing; events the lifecycle refuses are
//! kept in the ticket's history and sent to the dead-letter topic with the
//! rule that refused them.

use whistle_runtime::TicketStore;
use whistle_runtime::consumer::{HandleError, Handler, Incoming};
use whistle_runtime::store::Applied;

pub struct Projector {
    store: TicketStore,
}

impl Projector {
    pub fn new(store: TicketStore) -> Self {
        Projector { store }
    }
}

impl Handler for Projector {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = msg.event()?;
        match self.store.apply(&event, msg.partition, msg.offset).await? {
            Applied::Applied | Applied::Duplicate => Ok(()),
            Applied::Refused(rule) => Err(HandleError::Poison(format!("refused by the ticket lifecycle: {rule}"))),
        }
    }
}

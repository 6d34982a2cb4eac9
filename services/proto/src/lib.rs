//! Whistle's wire formats: the protobuf events published on Kafka and the
//! gRPC services, generated from `proto/`, and the one place where they are
//! converted to and from domain types.

pub mod convert;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("whistle.v1");
}

pub use convert::{decode_event, encode_event, timestamp, to_datetime};
pub use prost_types;

/// What can be wrong with a message from the wire.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a protobuf TicketEvent: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("event field {0} is missing")]
    Missing(&'static str),
    #[error("event has schema version {0}, newer than this service understands ({max})", max = whistle_domain::event::SCHEMA_VERSION)]
    SchemaVersion(u32),
    #[error("event field {0}")]
    Invalid(#[from] whistle_domain::Error),
    #[error("event timestamp out of range")]
    Timestamp,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

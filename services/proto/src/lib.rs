//! Whistle's wire formats: the protobuf events published on Kafka and the
//! gRPC services, generated from `proto/`, and the one place where they are
//! converted to and from domain types.

pub mod convert;

/// The encoded descriptors of every Whistle proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("whistle_descriptor");

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("whistle.v1");
}

pub use convert::{decode_event, encode_event, ticket_view, timestamp, to_datetime};
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

/// Client side of desk authentication: sends `authorization: Bearer <token>`
/// with every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

/// A token that cannot travel in a gRPC header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token must be printable ASCII")]
pub struct InvalidToken;

impl Bearer {
    /// `None` sends no token (the server answers `UNAUTHENTICATED`).
    pub fn new(token: Option<&str>) -> Result<Self, InvalidToken> {
        token.map(|t| format!("Bearer {}", t.trim()).parse().map_err(|_| InvalidToken)).transpose().map(Bearer)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer([secret])")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

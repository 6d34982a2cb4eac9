//! The test sandbox: the real broker and Redis (started through the project's
//! own `deploy/local/infra.sh` if they are not up), every service in-process
//! on port 0 with unique topic, group and key prefixes, a real webhook
//! receiver, and helpers to read what landed on Kafka.

pub mod browser;
mod clients;
mod infra;
mod mail;
mod platform;
mod state;
pub mod stats;
mod topics;
pub mod wait;
pub mod webhook;

pub use clients::*;
pub use infra::*;
pub use mail::*;
pub use platform::*;
pub use topics::*;
pub use wait::eventually;

pub use webhook::{Behaviour, WebhookReceiver};

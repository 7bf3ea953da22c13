//! Webhooks: signed HTTP deliveries of events to customers' endpoints.

pub mod signature;

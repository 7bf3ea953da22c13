//! Rows, the API shapes built from them, and the query functions, one module per
//! resource. Query functions take `&mut DbConn` so they compose in a transaction.

pub mod accesskey;
pub mod action;
pub mod activeflow;
pub mod address;
pub mod agent;
pub mod agent_stats;
pub mod billing;
pub mod billing_account;
pub mod call;
pub mod conference;
pub mod cursor;
pub mod customer;
pub mod event;
pub mod flow;
pub mod flow_secret;
pub mod idempotency;
pub mod message;
pub mod number;
pub mod webhook;
pub mod webhook_delivery;

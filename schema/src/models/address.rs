//! Addresses: where a call comes from or goes to, and how an agent can be reached.

use serde::{Deserialize, Serialize};

crate::text_enum!(
    /// The kind of endpoint an address names.
    AddressType {
        /// A phone number in E.164.
        Tel = "tel",
        /// A SIP URI `user@host`.
        Sip = "sip",
        /// One of the customer's agents, by id.
        Agent = "agent",
        /// An internal extension.
        Extension = "extension",
        /// One of the customer's conferences, by id.
        Conference = "conference",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Address {
    #[serde(rename = "type")]
    pub kind: AddressType,
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl Address {
    pub fn new(kind: AddressType, target: impl Into<String>) -> Self {
        Address { kind, target: target.into(), target_name: String::new(), name: String::new() }
    }
}

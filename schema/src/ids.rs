//! Typed identifiers. Every id is a UUID rendered as a lowercase hyphenated string and
//! stored as text, so one type works on all three backends; the newtype keeps a
//! `CallId` from being passed where an `AgentId` is expected.

use std::fmt;
use std::str::FromStr;

/// The input was not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID: {0:?}")]
pub struct InvalidId(pub String);

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
            diesel_derive_newtype::DieselNewType, utoipa::ToSchema,
        )]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(String);

        impl $name {
            /// A new time-ordered (v7) id: inserts append to the index instead of
            /// rewriting its pages.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn uuid(&self) -> uuid::Uuid {
                // Every constructor validated the string.
                uuid::Uuid::parse_str(&self.0).unwrap_or_default()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                uuid::Uuid::parse_str(s)
                    .map(|u| Self(u.to_string()))
                    .map_err(|_| InvalidId(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(u: uuid::Uuid) -> Self {
                Self(u.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )+};
}

#[rustfmt::skip]
typed_id!(
    CustomerId,
    AgentId,
    AccessKeyId,
    BillingAccountId,
    BillingId,
    EventId,
    CallId,
    FlowId,
    ActiveflowId,
    ConferenceId,
    ConferencecallId,
    NumberId,
    MessageId,
    WebhookId,
    DeliveryId,
    DeliveryAttemptId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let id: CustomerId = "0190C5E2-5A3B-7C4D-8E9F-0A1B2C3D4E5F".parse().expect("valid");
        assert_eq!(id.as_str(), "0190c5e2-5a3b-7c4d-8e9f-0a1b2c3d4e5f");
        assert!("call-789".parse::<CustomerId>().is_err());
    }

    #[test]
    fn serde_refuses_non_uuids() {
        assert!(serde_json::from_str::<AgentId>("\"nope\"").is_err());
        let id = AgentId::new();
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(serde_json::from_str::<AgentId>(&json).expect("parse"), id);
    }
}

//! Timestamps: stored as UTC `TIMESTAMP`/`DATETIME(6)`/text with microsecond
//! precision on every backend, rendered as RFC 3339 with microseconds and `Z`.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Now, truncated to the microsecond so that a value survives a round trip through any
/// of the three databases unchanged.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn from_unix_micros(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

pub fn format(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `#[serde(with = "callplane_schema::time::rfc3339")]` for `NaiveDateTime` fields.
pub mod rfc3339 {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let raw = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&raw).map(|t| t.naive_utc()).map_err(serde::de::Error::custom)
    }
}

/// The same for `Option<NaiveDateTime>`: absent moments render as `null`.
pub mod rfc3339_opt {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| {
                chrono::DateTime::parse_from_rfc3339(&raw).map(|t| t.naive_utc()).map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_microseconds_and_z() {
        let t = from_unix_micros(1_768_910_405_000_000).map(|t| format(&t));
        assert_eq!(t.as_deref(), Some("2026-01-20T12:00:05.000000Z"));
    }
}

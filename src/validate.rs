//! Input checks shared by the handlers. Each failure is a 400 whose message names the
//! field and says what was expected.

use callplane_schema::models::address::{Address, AddressType};

use crate::error::ApiError;

/// Syntax of an address: E.164 for `tel` (checked against the numbering plan's country
/// codes by `phonenumber`), `user@host` for `sip`, a UUID for `agent` and `conference`.
/// Whether an agent or conference id belongs to the caller is checked by its owner.
pub fn address(field: &str, address: &Address) -> Result<(), ApiError> {
    let target = address.target.as_str();
    let problem = match address.kind {
        AddressType::Tel if !is_e164(target) => Some("an E.164 number: `+` and 7 to 15 digits"),
        AddressType::Sip if !is_sip_uri(target) => Some("a SIP address `user@host`"),
        AddressType::Agent | AddressType::Conference if uuid::Uuid::parse_str(target).is_err() => Some("a UUID"),
        AddressType::Extension
            if target.is_empty()
                || target.len() > 64
                || !target.chars().all(|c| c.is_ascii_alphanumeric() || "*#_-.".contains(c)) =>
        {
            Some("an extension of 1 to 64 letters, digits or *#_-.")
        }
        _ => None,
    };
    match problem {
        Some(expected) => Err(ApiError::invalid(format!("{field}.target: {target:?} is not {expected}"))),
        None => text(&format!("{field}.name"), &address.name, 255)
            .and_then(|()| text(&format!("{field}.target_name"), &address.target_name, 255)),
    }
}

pub fn is_e164(target: &str) -> bool {
    let Some(digits) = target.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && phonenumber::parse(None, target).is_ok()
}

fn is_sip_uri(target: &str) -> bool {
    let target = target.strip_prefix("sip:").unwrap_or(target);
    let Some((user, host)) = target.split_once('@') else { return false };
    let host_ok =
        !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    !user.is_empty() && user.len() <= 128 && !user.chars().any(|c| c.is_whitespace() || c == '@') && host_ok
}

/// Free text: at most `max` characters, no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(format!("{field}: at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(format!("{field}: control characters are not allowed")));
    }
    Ok(())
}

pub fn username(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 255 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid("username: 1 to 255 characters without spaces"));
    }
    Ok(())
}

pub fn password(value: &str) -> Result<(), ApiError> {
    if value.chars().count() < 8 || value.len() > 1024 {
        return Err(ApiError::invalid("password: at least 8 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        for ok in ["+15551234567", "+15005550001", "+821012345678", "+4930123456"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["15551234567", "+1555", "+1555123456789012", "+1-555-123", "+0123456789", ""] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn sip() {
        assert!(is_sip_uri("alice@example.com"));
        assert!(is_sip_uri("sip:bob@10.0.0.1:5060"));
        assert!(!is_sip_uri("alice"));
        assert!(!is_sip_uri("@example.com"));
        assert!(!is_sip_uri("alice@"));
    }
}

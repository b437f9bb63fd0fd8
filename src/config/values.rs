//! Parsers for single values: each returns the value or says what was expected instead.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::FixedOffset;

use super::types::SignatureVersion;
use crate::aliyun::endpoint::{Endpoint, PlainHttp};

/// Label names the exporter puts on its own series, so a target may not reuse them.
pub const RESERVED_LABELS: &[&str] = &[
    "account",
    "digest",
    "status",
    "task_id",
    "task_name",
    "task_type",
    "source",
    "target_type",
    "raw_status",
    "id",
    "action",
    "code",
];

// Evaluated at compile time, so a bad constant fails the build instead of panicking at run time.
const UTC: FixedOffset = match FixedOffset::east_opt(0) {
    Some(tz) => tz,
    None => panic!("invalid UTC offset"),
};

/// Brings a digest to the one form used everywhere (lower-case bare hex); `Err` explains why not.
pub fn normalize_digest(s: &str) -> Result<String, String> {
    let bare = match s.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &s[7..],
        _ => s,
    };
    if bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected 64 hex characters after an optional \"sha256:\" prefix, got {s:?}"
        ))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the shape of both label and environment variable names.
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label name Prometheus accepts and the exporter does not use itself.
pub(super) fn check_label_name(name: &str) -> Result<(), String> {
    if !is_identifier(name) {
        Err(format!(
            "invalid label name {name:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    } else if name.starts_with("__") {
        Err(format!(
            "label name {name:?} starts with \"__\", which Prometheus reserves for internal use"
        ))
    } else if RESERVED_LABELS.contains(&name) {
        Err(format!(
            "label name {name:?} is used by the exporter itself (reserved: {})",
            RESERVED_LABELS.join(", ")
        ))
    } else {
        Ok(())
    }
}

/// A duration from `min` to `max`, written as humantime reads it.
pub(super) fn duration_in(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = humantime::parse_duration(s)
            .map_err(|_| format!("expected a duration such as 30s, 5m or 1h30m, got {s:?}"))?;
        let show = humantime::format_duration;
        if d < min {
            Err(format!("must be at least {}, got {s}", show(min)))
        } else if d > max {
            Err(format!("must be at most {}, got {s}", show(max)))
        } else {
            Ok(d)
        }
    }
}

/// An integer from `min` to `max`.
pub(super) fn integer_in<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    move |s| match s.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "expected an integer from {min} to {max}, got {s:?}"
        )),
    }
}

/// A request rate per second.
pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    // Below one request in ~17 minutes nothing useful happens; the bounds also keep the rate
    // limiter's arithmetic finite.
    match s.parse::<f64>() {
        Ok(r) if (0.001..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0.001 to 10000, got {s:?}")),
    }
}

/// A region id: lower-case words and numbers joined by `-`, at least two parts.
pub(super) fn parse_region(s: &str) -> Result<String, String> {
    let mut parts = s.split('-');
    let head_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let mut rest = parts.peekable();
    let has_rest = rest.peek().is_some();
    let rest_ok = rest.all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if head_ok && has_rest && rest_ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected a region id such as cn-hangzhou or ap-southeast-1, got {s:?}"
        ))
    }
}

/// `v1` or `v3`, in any case.
pub(super) fn parse_signature_version(s: &str) -> Result<SignatureVersion, String> {
    if s.eq_ignore_ascii_case("v1") {
        Ok(SignatureVersion::V1)
    } else if s.eq_ignore_ascii_case("v3") {
        Ok(SignatureVersion::V3)
    } else {
        Err(format!("expected v1 or v3, got {s:?}"))
    }
}

/// A fixed UTC offset `+HH:MM` or `-HH:MM`, or `Z`/`UTC`.
pub(super) fn parse_timezone(s: &str) -> Result<FixedOffset, String> {
    let fail = || format!("expected a UTC offset such as +08:00, -05:30, Z or UTC, got {s:?}");
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(UTC);
    }
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(fail()),
    };
    let b = s.as_bytes();
    let two = |i: usize| -> Option<i32> {
        let (h, l) = (*b.get(i)?, *b.get(i + 1)?);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| i32::from(h - b'0') * 10 + i32::from(l - b'0'))
    };
    match (b.len(), two(1), b.get(3), two(4)) {
        (6, Some(hh), Some(b':'), Some(mm)) if hh <= 23 && mm <= 59 => {
            FixedOffset::east_opt(sign * (hh * 3600 + mm * 60)).ok_or_else(fail)
        }
        _ => Err(fail()),
    }
}

/// A RAM role ARN.
pub(super) fn parse_role_arn(s: &str) -> Result<String, String> {
    parse_arn(
        s,
        "role",
        "a RAM role ARN such as acs:ram::123456789012:role/exporter",
    )
}

/// A RAM OIDC provider ARN.
pub(super) fn parse_provider_arn(s: &str) -> Result<String, String> {
    parse_arn(
        s,
        "oidc-provider",
        "an OIDC provider ARN such as acs:ram::123456789012:oidc-provider/ack-rrsa",
    )
}

/// A RAM ARN `acs:ram::ACCOUNT:KIND/NAME`, checked only as far as STS would reject it.
pub(super) fn parse_arn(s: &str, kind: &str, expected: &str) -> Result<String, String> {
    let named = s
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(&format!(":{kind}/")))
        .is_some_and(|(_, name)| !name.is_empty());
    if named {
        Ok(s.to_owned())
    } else {
        Err(format!("expected {expected}, got {s:?}"))
    }
}

/// STS's rule for RoleSessionName.
pub(super) fn parse_session_name(s: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected 2 to 64 characters among letters, digits, '.', '_', '@' and '-', got {s:?}"
        ))
    }
}

/// A RAM policy document: it must be a JSON object, kept as written.
pub(super) fn parse_policy(s: &str) -> Result<String, String> {
    let expected = "expected a JSON object such as {\"Version\": \"1\", \"Statement\": [...]}";
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(s.to_owned()),
        Ok(other) => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            Err(format!("{expected}, got {kind}"))
        }
        Err(e) => Err(format!("{expected}, but it is not valid JSON: {e}")),
    }
}

/// A RAM role name; it goes into the metadata URL path, so nothing else may slip in.
pub(super) fn parse_ecs_role(s: &str) -> Result<(), String> {
    let ok = s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a RAM role name (up to 64 letters, digits, '.', '_' and '-'), or \"\" to discover it, got {s:?}"
        ))
    }
}

/// `sas.endpoint` and `credentials.sts_endpoint`, with the problem text the walker reports.
pub(super) fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::parse(s, PlainHttp::LoopbackOnly).map_err(|e| e.to_string())
}

/// `credentials.metadata_endpoint`, where plain http is fine.
pub(super) fn parse_metadata_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::parse(s, PlainHttp::Anywhere).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_shape() {
        for ok in [
            "cn-hangzhou",
            "ap-southeast-1",
            "cn-shanghai-finance-1",
            "us-east-1",
        ] {
            assert!(parse_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cn",
            "CN-hangzhou",
            "cn-",
            "-cn",
            "cn--x",
            "1cn-x",
            "cn_hz",
            "cn-hz ",
        ] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timezone_forms() {
        assert_eq!(
            parse_timezone("+08:00").map(|t| t.local_minus_utc()),
            Ok(28800)
        );
        assert_eq!(
            parse_timezone("-05:30").map(|t| t.local_minus_utc()),
            Ok(-19800)
        );
        assert_eq!(parse_timezone("Z").map(|t| t.local_minus_utc()), Ok(0));
        assert_eq!(parse_timezone("utc").map(|t| t.local_minus_utc()), Ok(0));
        for bad in [
            "08:00", "+8:00", "+08:60", "+24:00", "+0800", "+08:00 ", "+０8:00", "",
        ] {
            assert!(parse_timezone(bad).is_err(), "{bad:?}");
        }
    }
}

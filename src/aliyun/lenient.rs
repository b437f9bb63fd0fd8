//! Reading JSON values the way the API's loose typing requires: numbers may arrive as strings,
//! `null` and `""` mean absent, and whatever cannot be read gets a short reason instead of
//! failing the whole answer. The scan-task and listing parsers share these readers.

use serde_json::{Map, Value};

/// Takes `field` out of `obj` and reads it with `read`. A value that cannot be read is left out
/// (`None`) and its reason goes to `dropped`, so one bad field never costs the rest of the object.
pub(crate) fn take_field<T>(
    obj: &mut Map<String, Value>,
    field: &'static str,
    read: fn(Value) -> Result<Option<T>, String>,
    dropped: impl FnOnce(String),
) -> Option<T> {
    match read(obj.remove(field)?) {
        Ok(v) => v,
        Err(reason) => {
            dropped(reason);
            None
        }
    }
}

/// What kind of JSON value this is, for error reasons.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short, printable excerpt of an unreadable value, so a reason never carries a megabyte.
pub(crate) fn preview(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// A 64-bit integer given as a JSON number or a numeric string; null and "" mean absent.
pub(crate) fn lenient_i64(v: Value) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            if n.is_u64() {
                return Err(format!("{n} is out of range"));
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Some encoders write 1.6686144e12; accept it only when it is a whole number in range.
            if f.fract() != 0.0 || !f.is_finite() {
                Err(format!("{n} is not a whole number"))
            } else if f.abs() < 9.0e18 {
                Ok(Some(f as i64))
            } else {
                Err(format!("{n} is out of range"))
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<i64>()
                .map(Some)
                .map_err(|_| format!("{} is not an integer", preview(&s)))
        }
        other => Err(format!(
            "invalid type: {}, expected an integer",
            kind(&other)
        )),
    }
}

/// A count: an integer as [`lenient_i64`] reads it that is not negative.
pub(crate) fn lenient_u64(v: Value) -> Result<Option<u64>, String> {
    match lenient_i64(v)? {
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| format!("{n} is negative")),
        None => Ok(None),
    }
}

/// A flag written as a boolean, as 0 or 1 (number or string), or as `"true"`/`"false"`.
pub(crate) fn lenient_bool(v: Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(b)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        other => match lenient_i64(other)? {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(n) => Err(format!("{n} is neither 0 nor 1")),
            None => Ok(None),
        },
    }
}

/// A string; numbers and booleans are taken as their text, null means absent.
pub(crate) fn lenient_string(v: Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(format!("invalid type: {}, expected a string", kind(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_are_whole_and_not_negative() {
        assert_eq!(lenient_u64(json!(7)), Ok(Some(7)));
        assert_eq!(lenient_u64(json!(" 12 ")), Ok(Some(12)));
        assert_eq!(lenient_u64(json!("")), Ok(None));
        assert_eq!(lenient_u64(json!(null)), Ok(None));
        assert_eq!(lenient_u64(json!(-1)), Err("-1 is negative".to_owned()));
        assert_eq!(
            lenient_u64(json!("many")),
            Err("\"many\" is not an integer".to_owned())
        );
    }

    #[test]
    fn flags_take_every_obvious_spelling() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!(1), Some(true)),
            (json!("1"), Some(true)),
            (json!("TRUE"), Some(true)),
            (json!(0), Some(false)),
            (json!("false"), Some(false)),
            (json!(null), None),
            (json!(""), None),
        ] {
            assert_eq!(lenient_bool(v.clone()), Ok(want), "{v}");
        }
        assert_eq!(
            lenient_bool(json!(2)),
            Err("2 is neither 0 nor 1".to_owned())
        );
        assert_eq!(
            lenient_bool(json!([1])),
            Err("invalid type: an array, expected an integer".to_owned())
        );
    }
}

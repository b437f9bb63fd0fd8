//! The wall clock the credential issuers stamp expirations with, replaceable so tests can move
//! time forward without sleeping.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of wall-clock time for the STS and metadata simulators.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    /// A clock driven by the given function, e.g. real time plus an offset a test moves.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The service's timestamp format (`YYYY-MM-DDThh:mm:ssZ`, UTC), used on the wire both ways.
pub(crate) const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Formats an instant as the service writes `Expiration` and expects `Timestamp`.
pub(crate) fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format(TIMESTAMP_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_clock_reports_what_the_function_says() {
        let at = DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default();
        let clock = Clock::from_fn(move || at);
        assert_eq!(clock.now(), at);
        assert_eq!(format_timestamp(clock.now()), "2030-03-17T17:46:40Z");
    }
}

//! A replaceable source of wall-clock time, so tests can sign requests "in the past" or move time
//! forward without sleeping.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Seconds since the Unix epoch, as metrics carry them.
pub type UnixSeconds = f64;

/// Seconds since the Unix epoch now.
pub fn unix_now() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Wall-clock time source shared by the client and the credential providers.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    /// A clock driven by the given function (tests).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The system clock shifted by `offset`, as a host with a skewed clock would see time.
    pub fn skewed(offset: chrono::Duration) -> Self {
        Clock(Arc::new(move || Utc::now() + offset))
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

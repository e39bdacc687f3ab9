//! The one wall clock: Unix milliseconds, and a [`Clock`] handle for the
//! parts whose tests set the time themselves (traffic cooldowns).

use std::sync::Arc;

/// Wall-clock milliseconds; tests pass their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The real clock as a [`Clock`].
pub fn system() -> Clock {
    Arc::new(now_ms)
}

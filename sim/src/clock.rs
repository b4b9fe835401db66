//! Wall-clock helpers in unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time now, seconds with fraction.
pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Sleeps until unix time `t` (returns at once if it has passed).
pub async fn sleep_until_unix(t: f64) {
    let wait = t - now_unix();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

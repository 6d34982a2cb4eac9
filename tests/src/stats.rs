//! Figures the benchmarks print.

use std::time::Duration;

/// The `p` percentile (0 to 1) of sorted durations, in milliseconds (NaN
/// when there are none).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

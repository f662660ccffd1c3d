//! Timestamps and random ids without pulling in a date or RNG crate.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub fn now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    format_millis(ms)
}

/// RFC 3339 UTC with milliseconds: the same formatting the client sends as `clientTime`.
pub fn format_millis(ms: u64) -> String {
    tidesync::core::time::iso_time(ms)
}

/// Not cryptographic: std's per-process random hash keys, a counter and the clock are plenty for
/// record ids and for deciding which request a fault rate hits.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.finish()
}

/// A number in `[0, 1)`.
pub fn random_unit() -> f64 {
    // The top 53 bits fill an f64 mantissa exactly.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random id in UUID v4 layout.
pub fn random_id() -> String {
    tidesync::core::engine::uuid_v4(random_u64(), random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn random_ids_look_like_uuids_and_differ() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        let unit = random_unit();
        assert!((0.0..1.0).contains(&unit));
    }
}

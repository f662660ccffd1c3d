//! Backoff with jitter, `Retry-After`, outcome classification and the circuit breaker.

use serde::Serialize;

/// How failed ops are retried. All durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub cap_ms: u64,
    /// Extra random delay added on top of the jittered backoff.
    pub jitter_ms: u64,
    /// After this many failed attempts an op goes to the dead letters.
    pub max_attempts: u32,
    /// An op older than this that fails again goes to the dead letters.
    pub max_age_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 1_000,
            cap_ms: 30_000,
            jitter_ms: 1_000,
            max_attempts: 10,
            max_age_ms: 7 * 24 * 3_600_000,
        }
    }
}

impl RetryPolicy {
    /// `min(base * 2^attempts, cap)` with full jitter, plus up to `jitter_ms`.
    /// `r1` and `r2` are uniformly random 64-bit numbers.
    pub fn backoff(&self, attempts: u32, r1: u64, r2: u64) -> u64 {
        let exp = self.base_ms.saturating_mul(1u64.checked_shl(attempts.min(62)).unwrap_or(u64::MAX));
        let ceiling = exp.min(self.cap_ms);
        r1 % (ceiling + 1) + r2 % (self.jitter_ms + 1)
    }

    /// The delay before the next attempt: the server's `Retry-After` wins when it is later than
    /// our own backoff (never earlier: a server asking for 0 s must not defeat the backoff).
    pub fn next_delay(&self, attempts: u32, retry_after_ms: Option<u64>, r1: u64, r2: u64) -> u64 {
        let own = self.backoff(attempts, r1, r2);
        match retry_after_ms {
            Some(ra) => ra.max(own),
            None => own,
        }
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date. Returns milliseconds from `now_ms`.
/// A date in the past means "now" (0). Unparseable values are ignored (`None`).
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Cap absurd values at a day so a hostile header cannot park the queue forever.
        return v.parse::<u64>().ok().map(|s| s.min(86_400) * 1_000);
    }
    let at = super::time::parse_http_date(v)?;
    Some(at.saturating_sub(now_ms).min(86_400_000))
}

/// What to do with an op after the server (or the network) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Accepted,
    Conflict,
    /// Try again later; the op keeps its id.
    Retryable,
    /// Ask the app for a fresh token, then retry.
    Reauth,
    /// The server refused the op for good: dead letter.
    Permanent,
}

/// Classifies an HTTP status for an op of the given kind (DESIGN.md §5).
pub fn classify_status(status: u16, is_create: bool) -> Class {
    match status {
        200..=299 => Class::Accepted,
        409 | 412 => Class::Conflict,
        404 if !is_create => Class::Conflict,
        401 => Class::Reauth,
        408 | 425 | 429 | 500..=599 => Class::Retryable,
        _ => Class::Permanent,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum BreakerState {
    Closed { failures: u32 },
    Open { until: u64 },
    HalfOpen,
}

/// Stops sending after `threshold` consecutive failed requests; after `cooldown_ms` one probe
/// request goes through (half-open): success closes the breaker, failure opens it again.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    pub threshold: u32,
    pub cooldown_ms: u64,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown_ms: u64) -> Self {
        CircuitBreaker { threshold: threshold.max(1), cooldown_ms, state: BreakerState::Closed { failures: 0 } }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a request be sent now? Moves an expired open breaker to half-open.
    pub fn allow(&mut self, now: u64) -> bool {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
        }
    }

    /// Whether `allow(now)` would let a request through, without moving to half-open.
    pub fn would_allow(&self, now: u64) -> bool {
        !matches!(self.state, BreakerState::Open { until } if now < until)
    }

    /// When the breaker will let a request through again (`None` when it is not open).
    pub fn reopens_at(&self) -> Option<u64> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now: u64) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed { failures: failures + 1 }
            }
            _ => BreakerState::Open { until: now + self.cooldown_ms },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        // The largest random numbers give the ceiling of each step.
        let max = |a| p.backoff(a, 1_000_000_000_000, 1_000_000_000_000);
        for a in 0..70 {
            let d = p.backoff(a, u64::MAX, u64::MAX);
            assert!(d <= p.cap_ms + p.jitter_ms, "attempt {a}: {d}");
        }
        assert_eq!(p.backoff(0, 0, 0), 0);
        assert_eq!(p.backoff(3, 8_000, 0), 8_000);
        assert_eq!(p.backoff(3, 8_001, 0), 0); // full jitter: uniform in [0, 8000]
        assert_eq!(p.backoff(10, 30_000, 1_000), 31_000);
        assert!(max(0) <= 2_000);
    }

    #[test]
    fn retry_after_wins_when_later() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_delay(0, Some(5_000), 0, 0), 5_000);
        // A server asking for an immediate retry still waits our whole backoff: `Retry-After: 0`
        // must not burn every attempt in seconds.
        assert_eq!(p.next_delay(5, Some(0), 700, 0), 700);
        assert_eq!(p.next_delay(5, Some(0), 20_000, 300), p.backoff(5, 20_000, 300));
        assert_eq!(p.next_delay(5, Some(500), 20_000, 300), 20_300);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(parse_retry_after(" 3 ", 0), Some(3_000));
        assert_eq!(parse_retry_after("99999999999", 0), Some(86_400_000));
        let at = crate::core::time::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at, 784_111_777_000);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", at), Some(10_000));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + 5_000), Some(0));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
        assert_eq!(parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", 0), None);
    }

    #[test]
    fn statuses_classify_as_designed() {
        assert_eq!(classify_status(200, false), Class::Accepted);
        assert_eq!(classify_status(201, true), Class::Accepted);
        assert_eq!(classify_status(409, false), Class::Conflict);
        assert_eq!(classify_status(412, false), Class::Conflict);
        assert_eq!(classify_status(404, false), Class::Conflict);
        assert_eq!(classify_status(404, true), Class::Permanent);
        assert_eq!(classify_status(401, false), Class::Reauth);
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s, false), Class::Retryable, "{s}");
        }
        for s in [400, 403, 405, 410, 413, 422] {
            assert_eq!(classify_status(s, false), Class::Permanent, "{s}");
        }
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut b = CircuitBreaker::new(3, 1_000);
        assert!(b.allow(0));
        b.on_failure(0);
        b.on_failure(0);
        assert!(b.allow(0));
        b.on_failure(10);
        assert_eq!(b.state(), BreakerState::Open { until: 1_010 });
        assert!(!b.allow(500));
        assert!(b.allow(1_010));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_failure(1_020); // the probe failed: open again at once
        assert_eq!(b.state(), BreakerState::Open { until: 2_020 });
        assert!(b.allow(2_020));
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }
}

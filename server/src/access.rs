//! The guard in front of `/api/` and `/auth/`: a token bucket per client address, the bearer
//! token check, and a token bucket per user. Refusals are 401 or 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::{authenticate, unauthorized};
use crate::error::ApiError;
use crate::{under, AppState};

/// Requests per second and the burst a bucket holds; `per_second == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const OFF: Rate = Rate { per_second: 0.0, burst: 0.0 };

    /// `RATE[:BURST]` (burst defaults to twice the rate, at least 1) or `off`/`0`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid rate {text:?}: expected RATE[:BURST] (requests per second) or off");
        if text == "off" {
            return Ok(Self::OFF);
        }
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (text, None),
        };
        let per_second: f64 = rate.trim().parse().map_err(|_| invalid())?;
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| invalid())?,
            None => (per_second * 2.0).max(1.0),
        };
        let rate = Self { per_second, burst };
        rate.validate().map_err(|_| invalid())?;
        Ok(rate)
    }

    pub fn validate(&self) -> Result<(), String> {
        let finite = self.per_second.is_finite() && self.burst.is_finite();
        if !finite || self.per_second < 0.0 || (self.per_second > 0.0 && self.burst < 1.0) {
            return Err("perSecond must be >= 0 and burst >= 1".into());
        }
        Ok(())
    }
}

/// The two limits: per signed-in user (on `/api/`), per client address (on `/api/` and `/auth/`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    pub user: Rate,
    pub address: Rate,
}

impl Default for RateLimits {
    /// Generous: an app syncing normally never meets them; a runaway loop or a flood does.
    fn default() -> Self {
        Self { user: Rate { per_second: 100.0, burst: 300.0 }, address: Rate { per_second: 300.0, burst: 900.0 } }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, in this process's memory.
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Past this many buckets, full ones (idle clients) are dropped.
const PRUNE_ABOVE: usize = 10_000;

impl Limiter {
    /// Takes one token from `key`'s bucket, or says how long until one is there.
    fn take(&self, key: String, rate: Rate, now: Instant) -> Result<(), Duration> {
        if rate.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_second < rate.burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: rate.burst, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate.per_second;
        bucket.tokens = (bucket.tokens + refill).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate.per_second))
        }
    }

    pub fn clear(&self) {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

fn too_many(state: &AppState, wait: Duration) -> Response {
    state.rate_limited.fetch_add(1, Ordering::Relaxed);
    // Whole seconds, rounded up: a client waiting that long finds a token.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!("too many requests; retry in {} s", seconds.max(1));
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn limits(state: &AppState) -> RateLimits {
    *state.limits.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Guarded {
    Api,
    SignIn,
}

fn classify(path: &str) -> Option<Guarded> {
    if under(path, "/api") {
        Some(Guarded::Api)
    } else if under(path, "/auth") {
        Some(Guarded::SignIn)
    } else {
        None
    }
}

/// A push channel's `?access_token=` (RFC 6750 §2.3): `EventSource` and `WebSocket` cannot send
/// an `Authorization` header. Only the channels take it; tokens in URLs end up in logs.
fn channel_token(req: &Request) -> Option<String> {
    #[derive(Deserialize)]
    struct InUrl {
        access_token: Option<String>,
    }
    if !crate::live::is_channel(req.uri().path()) {
        return None;
    }
    axum::extract::Query::<InUrl>::try_from_uri(req.uri()).ok()?.0.access_token
}

/// Runs before fault injection and the handlers: a refused request never reaches either.
pub async fn guard(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(kind) = classify(req.uri().path()) else {
        return next.run(req).await;
    };
    let now = Instant::now();
    let limits = limits(&state);
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let address_key = format!("address:{}", peer.as_deref().unwrap_or("unknown"));
    if let Err(wait) = state.limiter.take(address_key, limits.address, now) {
        return too_many(&state, wait);
    }
    if let Guarded::Api = kind {
        let user = match authenticate(&state.auth, req.headers(), channel_token(&req)) {
            Ok(user) => user,
            Err(why) => {
                state.unauthorized.fetch_add(1, Ordering::Relaxed);
                return unauthorized(why);
            }
        };
        if let Err(wait) = state.limiter.take(format!("user:{}", user.0), limits.user, now) {
            return too_many(&state, wait);
        }
        req.extensions_mut().insert(user);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("5").unwrap(), Rate { per_second: 5.0, burst: 10.0 });
        assert_eq!(Rate::parse("0.5:3").unwrap(), Rate { per_second: 0.5, burst: 3.0 });
        assert_eq!(Rate::parse("off").unwrap(), Rate::OFF);
        assert_eq!(Rate::parse("0").unwrap().per_second, 0.0);
        for bad in ["", "x", "-1", "5:0", "5:x", "inf", "NaN"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_empties_refills_and_says_how_long_to_wait() {
        let limiter = Limiter::default();
        let rate = Rate { per_second: 2.0, burst: 2.0 };
        let t0 = Instant::now();
        assert!(limiter.take("k".into(), rate, t0).is_ok());
        assert!(limiter.take("k".into(), rate, t0).is_ok());
        let wait = limiter.take("k".into(), rate, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.take("other".into(), rate, t0).is_ok(), "buckets are per key");
        assert!(limiter.take("k".into(), rate, t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.take("k".into(), Rate::OFF, t0).is_ok());
    }
}

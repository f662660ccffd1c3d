//! `/admin/*` (only with `--admin`) and `/healthz`: inspection, reset and limits for tests and the
//! demo. Never fault-injected, never rate-limited, never asked for a token.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::access::RateLimits;
use crate::body::read_config;
use crate::error::{json_response, ApiError};
use crate::faults::FaultConfig;
use crate::{store, AppState};

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"ok": true}), None)
}

pub async fn ledger(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let entries = tokio::task::spawn_blocking(move || store.with(|conn| store::ledger_entries(conn))).await??;
    Ok(json_response(StatusCode::OK, &json!({"entries": entries}), None))
}

pub async fn stats(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let counts = tokio::task::spawn_blocking(move || store.with(|conn| store::counts(conn))).await??;
    let body = json!({
        "records": counts.records,
        "liveRecords": counts.live_records,
        "ledgerEntries": counts.ledger_entries,
        "requests": state.requests.load(Ordering::Relaxed),
        "unauthorized": state.unauthorized.load(Ordering::Relaxed),
        "rateLimited": state.rate_limited.load(Ordering::Relaxed),
        "cursor": counts.cursor,
        "channels": state.live.open_channels(),
    });
    Ok(json_response(StatusCode::OK, &body, None))
}

/// Wipes records, the ledger and the change sequences, clears faults, the counters and the rate
/// limiter's buckets, and puts the configured limits back: a fresh server for the next test case.
pub async fn reset(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.with(store::reset)).await??;
    *state.faults.lock().unwrap_or_else(PoisonError::into_inner) = FaultConfig::default();
    for counter in [&state.requests, &state.unauthorized, &state.rate_limited] {
        counter.store(0, Ordering::Relaxed);
    }
    *state.limits.lock().unwrap_or_else(PoisonError::into_inner) = state.configured_limits;
    state.limiter.clear();
    // The sequences started again: a channel's position means nothing now. Its device reconnects,
    // is greeted afresh and pulls everything.
    state.live.cut_all();
    Ok(json_response(StatusCode::OK, &json!({"success": true}), None))
}

fn limits_body(state: &AppState) -> Response {
    let limits = *state.limits.lock().unwrap_or_else(PoisonError::into_inner);
    json_response(StatusCode::OK, &serde_json::to_value(limits).unwrap_or_default(), None)
}

/// `GET /admin/limits` → `{"user": {"perSecond", "burst"}, "address": {...}}`
pub async fn get_limits(State(state): State<Arc<AppState>>) -> Response {
    limits_body(&state)
}

/// `POST /admin/limits` with both rates: replaces the limits in force (until a reset) and empties
/// every bucket.
pub async fn set_limits(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limits: RateLimits = read_config(&headers, body, "limits").await?;
    limits.user.validate().and(limits.address.validate()).map_err(ApiError::bad_request)?;
    *state.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
    state.limiter.clear();
    Ok(limits_body(&state))
}

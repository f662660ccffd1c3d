//! `/admin/*` and `/healthz`: inspection and reset for tests and the demo. Never fault-injected.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

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
        "cursor": counts.cursor,
    });
    Ok(json_response(StatusCode::OK, &body, None))
}

/// Wipes records, the ledger and the change sequence, clears faults and the request counter: a
/// fresh server for the next test case.
pub async fn reset(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.with(store::reset)).await??;
    *state.faults.lock().unwrap_or_else(PoisonError::into_inner) = FaultConfig::default();
    state.requests.store(0, Ordering::Relaxed);
    Ok(json_response(StatusCode::OK, &json!({"success": true}), None))
}

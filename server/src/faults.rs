//! Fault injection for `/api/` routes, configured through `/admin/faults`. It lets the client's
//! retry, backoff and malformed-response handling be tested against a real server.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::body::read_config;
use crate::error::{error_body, json_response, ApiError};
use crate::{clock, under, AppState};

const MAX_LATENCY_MS: u64 = 120_000;
const HUGE_BODY_BYTES: usize = 20 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MalformedKind {
    #[default]
    Html,
    Truncated,
    WrongTypes,
    Liar,
    Huge,
    Redirect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultConfig {
    pub fail_next: u64,
    pub fail_status: u16,
    pub fail_rate: f64,
    pub retry_after: Option<String>,
    pub latency_ms: u64,
    pub drop_response_next: u64,
    pub malformed_next: u64,
    pub malformed_kind: MalformedKind,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            fail_next: 0,
            fail_status: 503,
            fail_rate: 0.0,
            retry_after: None,
            latency_ms: 0,
            drop_response_next: 0,
            malformed_next: 0,
            malformed_kind: MalformedKind::Html,
        }
    }
}

impl FaultConfig {
    fn validate(&self) -> Result<(), String> {
        if !(100..=599).contains(&self.fail_status) {
            return Err("failStatus must be an HTTP status code (100-599)".into());
        }
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err("failRate must be between 0 and 1".into());
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!("latencyMs must be at most {MAX_LATENCY_MS}"));
        }
        if let Some(value) = &self.retry_after {
            if HeaderValue::from_str(value).is_err() {
                return Err("retryAfter must be a valid header value".into());
            }
        }
        Ok(())
    }
}

enum Action {
    Pass,
    Fail { status: u16, retry_after: Option<String> },
    Malformed(MalformedKind),
    DropResponse,
}

/// Picks what happens to one request and consumes the counter that fired, under one lock so
/// concurrent requests never share a single `failNext`.
fn decide(state: &AppState) -> Action {
    let mut faults = state.faults.lock().unwrap_or_else(PoisonError::into_inner);
    let fail = if faults.fail_next > 0 {
        faults.fail_next -= 1;
        true
    } else {
        faults.fail_rate > 0.0 && clock::random_unit() < faults.fail_rate
    };
    if fail {
        return Action::Fail { status: faults.fail_status, retry_after: faults.retry_after.clone() };
    }
    if faults.malformed_next > 0 {
        faults.malformed_next -= 1;
        return Action::Malformed(faults.malformed_kind);
    }
    if faults.drop_response_next > 0 {
        faults.drop_response_next -= 1;
        return Action::DropResponse;
    }
    Action::Pass
}

pub async fn middleware(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // The push channels are neither counted nor faulted: a test's `failNext` is meant for a
    // sync request, and a channel that stays open would take it at a random moment.
    if !under(path, "/api") || crate::live::is_channel(path) {
        return next.run(req).await;
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    let latency = state.faults.lock().unwrap_or_else(PoisonError::into_inner).latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match decide(&state) {
        Action::Pass => next.run(req).await,
        Action::Fail { status, retry_after } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = json_response(status, &error_body("injected failure", "INJECTED_FAILURE"), None);
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Action::Malformed(kind) => malformed(kind, &req),
        Action::DropResponse => {
            // The request is applied and committed; only the answer is lost, as when a proxy
            // times out after the backend did the work.
            let _applied = next.run(req).await;
            json_response(StatusCode::GATEWAY_TIMEOUT, &error_body("response dropped", "DROPPED"), None)
        }
    }
}

fn malformed(kind: MalformedKind, req: &Request) -> Response {
    let json_type = HeaderValue::from_static("application/json");
    let (content_type, body) = match kind {
        MalformedKind::Html => {
            (HeaderValue::from_static("text/html"), Body::from("<html><body>Bad Gateway</body></html>"))
        }
        MalformedKind::Truncated => {
            let full = json!({
                "success": true,
                "results": [{"operationId": "00000000-0000-4000-8000-000000000000", "success": true, "status": 200}],
                "serverTime": clock::now(),
                "metrics": {"processedCount": 1, "successCount": 1, "conflictCount": 0, "errorCount": 0},
            })
            .to_string();
            let half = full.len() / 2;
            (json_type, Body::from(full[..half].to_owned()))
        }
        MalformedKind::WrongTypes => (json_type, Body::from(json!({"success": "yes", "results": 5}).to_string())),
        MalformedKind::Liar => (json_type, Body::from(json!({"success": true, "results": []}).to_string())),
        MalformedKind::Huge => {
            let mut text = Vec::with_capacity(HUGE_BODY_BYTES + 2);
            text.push(b'"');
            text.resize(HUGE_BODY_BYTES + 1, b'x');
            text.push(b'"');
            (json_type, Body::from(text))
        }
        MalformedKind::Redirect => {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = HeaderValue::from_str(&target) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return response;
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

fn current(state: &AppState) -> Value {
    let faults = state.faults.lock().unwrap_or_else(PoisonError::into_inner).clone();
    serde_json::to_value(faults).unwrap_or(Value::Null)
}

/// `GET /admin/faults`
pub async fn get_config(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, &current(&state), None)
}

/// `POST /admin/faults`: replaces the whole configuration (omitted fields take their defaults).
pub async fn set_config(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config: FaultConfig = read_config(&headers, body, "fault config").await?;
    config.validate().map_err(ApiError::bad_request)?;
    *state.faults.lock().unwrap_or_else(PoisonError::into_inner) = config;
    Ok(json_response(StatusCode::OK, &current(&state), None))
}

/// `DELETE /admin/faults`
pub async fn clear_config(State(state): State<Arc<AppState>>) -> Response {
    *state.faults.lock().unwrap_or_else(PoisonError::into_inner) = FaultConfig::default();
    json_response(StatusCode::OK, &current(&state), None)
}

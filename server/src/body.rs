//! Request bodies are read by hand so that every failure (too large, not JSON) is a JSON error;
//! axum's own extractors answer with plain text.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::ApiError;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An oversize body is still read (and thrown away) up to this size before answering 413: closing
/// a socket with unread data makes the kernel send a reset, and the client then loses the 413.
const DRAIN_LIMIT_BYTES: usize = 32 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "BODY_TOO_LARGE",
        format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

pub async fn read_bytes(headers: &HeaderMap, mut body: Body) -> Result<Vec<u8>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ApiError::bad_request(format!("failed to read body: {err}")))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT_BYTES {
                break;
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(buf)
}

pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_bytes(headers, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", "request body is empty; expected JSON"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", format!("malformed JSON: {err}")))
}

/// For endpoints whose body must be a JSON object.
pub async fn read_object(headers: &HeaderMap, body: Body) -> Result<serde_json::Map<String, Value>, ApiError> {
    match read_json(headers, body).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request("request body must be a JSON object")),
    }
}

/// A JSON object read into `T` (an admin configuration); `what` names it in the 400. serde would
/// also take a struct written as an array: only an object is accepted.
pub async fn read_config<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<T, ApiError> {
    let value = read_json(headers, body).await?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!("{what} must be a JSON object")));
    }
    serde_json::from_value(value).map_err(|err| ApiError::bad_request(format!("invalid {what}: {err}")))
}

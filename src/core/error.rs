//! `SyncError`: every failure tidesync reports, each with a stable code.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum SyncError {
    /// The app passed something unusable (a non-object record, an empty id, bad config).
    InvalidInput(String),
    /// The configuration given to `open()` is invalid.
    Config(String),
    /// The record does not exist.
    NotFound(String),
    /// The browser refused to store more data.
    QuotaExceeded(String),
    /// IndexedDB failed for another reason.
    Storage(String),
    /// The database was closed (by `close()`, or by a newer version in another tab).
    Closed,
    /// No network.
    Offline,
    /// The request failed before an HTTP status arrived.
    Network(String),
    /// The request took longer than the configured timeout.
    Timeout,
    /// The server answered with an unexpected HTTP status.
    Http { status: u16, message: String },
    /// The server's response could not be understood.
    Protocol(String),
    /// The server refused our credentials (401) or our access (403), after a fresh token.
    Auth { status: u16, message: String },
    /// A stored record no longer matches its checksum.
    Integrity(String),
    /// A manual conflict exists, or the op was rejected as conflicting.
    Conflict(String),
}

impl SyncError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::InvalidInput(_) => "INVALID_INPUT",
            SyncError::Config(_) => "CONFIG",
            SyncError::NotFound(_) => "NOT_FOUND",
            SyncError::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            SyncError::Storage(_) => "STORAGE",
            SyncError::Closed => "CLOSED",
            SyncError::Offline => "OFFLINE",
            SyncError::Network(_) => "NETWORK",
            SyncError::Timeout => "TIMEOUT",
            SyncError::Http { .. } => "HTTP",
            SyncError::Protocol(_) => "PROTOCOL",
            SyncError::Auth { .. } => "AUTH",
            SyncError::Integrity(_) => "INTEGRITY",
            SyncError::Conflict(_) => "CONFLICT",
        }
    }

    /// The HTTP status behind the error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SyncError::Http { status, .. } | SyncError::Auth { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            SyncError::Config(m) => write!(f, "invalid configuration: {m}"),
            SyncError::NotFound(m) => write!(f, "not found: {m}"),
            SyncError::QuotaExceeded(m) => write!(f, "storage quota exceeded: {m}"),
            SyncError::Storage(m) => write!(f, "storage error: {m}"),
            SyncError::Closed => write!(f, "the database is closed"),
            SyncError::Offline => write!(f, "offline"),
            SyncError::Network(m) => write!(f, "network error: {m}"),
            SyncError::Timeout => write!(f, "request timed out"),
            SyncError::Http { status, message } => write!(f, "HTTP {status}: {message}"),
            SyncError::Protocol(m) => write!(f, "unexpected server response: {m}"),
            SyncError::Auth { status, message } => write!(f, "HTTP {status}: access refused: {message}"),
            SyncError::Integrity(m) => write!(f, "integrity check failed: {m}"),
            SyncError::Conflict(m) => write!(f, "conflict: {m}"),
        }
    }
}

impl SyncError {
    /// An HTTP 401 or 403 as what it means to the app: `AUTH`.
    pub fn as_auth(&self) -> Option<SyncError> {
        match self {
            SyncError::Http { status: status @ (401 | 403), message } => {
                Some(SyncError::Auth { status: *status, message: message.clone() })
            }
            _ => None,
        }
    }
}

impl std::error::Error for SyncError {}

pub type Result<T> = std::result::Result<T, SyncError>;

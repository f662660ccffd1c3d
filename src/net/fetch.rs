//! The `Transport` over the browser's `fetch`: the auth callback, the standard headers, and the debug
//! tools' fault injection. The `fetch` call itself (timeout through `AbortController`, no redirects,
//! the response size cap) is a few lines of JS beside this file (`fetch.js`).

use std::cell::{Cell, RefCell};

use js_sys::{Array, Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::batch::{decode_response, encode_request, json_answer, MAX_RESPONSE_BYTES};
use super::pull::decode_listing;
use super::rest::{
    decode, decode_check, decode_fetched, item_path, may_exist, needs_check, request_for, CollectionWire, Wire,
};
use super::shape::Next;
use crate::core::error::SyncError;
use crate::core::op::Operation;
use crate::core::traits::{Failure, OpResult, Outcome, PullPage, PushResponse, Transport};
use crate::web::{navigator_online, sleep};

#[wasm_bindgen(module = "/src/net/fetch.js")]
extern "C" {
    /// One request (`fetch.js`): resolves to `[status, body, Retry-After, ETag]`, rejects with
    /// `[kind, message]`.
    #[wasm_bindgen(js_name = send)]
    fn http(method: &str, url: &str, body: Option<&str>, headers: &str, timeout_ms: u32, max_bytes: f64) -> Promise;
}

/// Faults the debug tools inject on this client (`window.syncDebug`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub offline: bool,
    pub fail_next: u32,
    pub fail_status: u16,
    pub latency_ms: u32,
}

pub struct FetchTransport {
    base_url: String,
    batch_endpoint: String,
    /// Each collection's endpoint, for pulls.
    collections: crate::core::sorted::VecMap<String, CollectionWire>,
    timeout_ms: u32,
    client_version: String,
    /// `auth()` from the app's options: returns a token (or a promise of one).
    auth: Option<Function>,
    /// The last token, in memory only: tokens never reach IndexedDB.
    token: RefCell<Option<String>>,
    pub faults: RefCell<Faults>,
    pub requests: Cell<u64>,
    /// This device's id, for the requests the engine does not send with one (pulls). Known only
    /// once the engine has read it from the database: see `js::engine`.
    pub device_id: RefCell<String>,
}

/// What came back from one HTTP request.
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub etag: Option<String>,
}

impl FetchTransport {
    pub fn new(
        base_url: &str,
        batch_endpoint: &str,
        collections: crate::core::sorted::VecMap<String, CollectionWire>,
        timeout_ms: u32,
        auth: Option<Function>,
    ) -> Self {
        FetchTransport {
            base_url: base_url.trim_end_matches('/').to_string(),
            batch_endpoint: batch_endpoint.to_string(),
            collections,
            timeout_ms,
            client_version: env!("CARGO_PKG_VERSION").to_string(),
            auth,
            token: RefCell::new(None),
            faults: RefCell::new(Faults::default()),
            requests: Cell::new(0),
            device_id: RefCell::new(String::new()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base_url, path)
        }
    }

    /// The current token, asking the app's `auth()` when we have none or `refresh` is set.
    async fn token(&self, refresh: bool) -> Result<Option<String>, Failure> {
        let Some(auth) = &self.auth else { return Ok(None) };
        if !refresh {
            if let Some(t) = self.token.borrow().clone() {
                return Ok(Some(t));
            }
        }
        let auth_failed =
            |m: String| Failure::new(SyncError::Http { status: 401, message: format!("auth() failed: {m}") });
        let v = auth.call0(&JsValue::NULL).map_err(|e| auth_failed(describe(&e)))?;
        let v = match v.dyn_into::<Promise>() {
            Ok(p) => JsFuture::from(p).await.map_err(|e| auth_failed(describe(&e)))?,
            Err(v) => v,
        };
        let t = v.as_string().filter(|t| !t.is_empty());
        *self.token.borrow_mut() = t.clone();
        Ok(t)
    }

    /// Sends one request with the standard headers; on 401 asks `auth()` once more and retries.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
        device_id: &str,
    ) -> Result<HttpAnswer, Failure> {
        self.apply_faults().await?;
        let mut answer = self.send_once(method, url, body, extra, device_id, false).await?;
        if answer.status == 401 && self.auth.is_some() {
            answer = self.send_once(method, url, body, extra, device_id, true).await?;
        }
        Ok(answer)
    }

    async fn apply_faults(&self) -> Result<(), Failure> {
        let latency = self.faults.borrow().latency_ms;
        if latency > 0 {
            sleep(u64::from(latency)).await;
        }
        let mut f = self.faults.borrow_mut();
        if f.offline || !navigator_online() {
            return Err(Failure::new(SyncError::Offline));
        }
        if f.fail_next > 0 {
            f.fail_next -= 1;
            let status = if f.fail_status == 0 { 503 } else { f.fail_status };
            return Err(Failure::new(SyncError::Http { status, message: "failure injected by syncDebug".into() }));
        }
        Ok(())
    }

    async fn send_once(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
        device_id: &str,
        refresh: bool,
    ) -> Result<HttpAnswer, Failure> {
        let token = self.token(refresh).await?;
        let bearer = token.map(|t| format!("Bearer {t}"));
        let standard = [
            ("Content-Type", body.map(|_| "application/json")),
            ("X-Device-ID", Some(device_id).filter(|d| !d.is_empty())),
            // tidesync's own version; `X-Client-Version` is the base version of a REST write.
            ("X-Tidesync-Version", Some(self.client_version.as_str())),
            ("Authorization", bearer.as_deref()),
        ];
        let mut headers = String::from("[");
        for (k, v) in standard.iter().filter_map(|(k, v)| Some((*k, (*v)?))).chain(extra.iter().copied()) {
            if headers.len() > 1 {
                headers.push(',');
            }
            crate::core::json::write_pair(k, v, &mut headers);
        }
        headers.push(']');
        self.requests.set(self.requests.get() + 1);
        let answer = JsFuture::from(http(method, url, body, &headers, self.timeout_ms, MAX_RESPONSE_BYTES as f64))
            .await
            .map_err(|e| {
                let e: &Array = e.unchecked_ref();
                let message = e.get(1).as_string().unwrap_or_default();
                Failure::new(match e.get(0).as_string().as_deref() {
                    Some("timeout") => SyncError::Timeout,
                    Some("protocol") => SyncError::Protocol(message),
                    _ => SyncError::Network(message),
                })
            })?;
        let a: &Array = answer.unchecked_ref();
        Ok(HttpAnswer {
            status: a.get(0).as_f64().map_or(0, |s| s as u16),
            body: a.get(1).as_string().unwrap_or_default(),
            retry_after: a.get(2).as_string(),
            etag: a.get(3).as_string(),
        })
    }
}

impl FetchTransport {
    /// One op as one REST request. `Err` only when no HTTP answer came (network, timeout, offline).
    async fn push_rest(&self, op: &Operation, device_id: &str) -> Result<Outcome, Failure> {
        let Some(wire) = self.collections.get(&op.collection) else {
            return Ok(Outcome::Failed(Failure::new(SyncError::InvalidInput(format!(
                "unknown collection '{}'",
                op.collection
            )))));
        };
        let item = self.url(&item_path(wire, &op.entity_id));
        if needs_check(op) {
            // No blind writes: the version this write was made on is unknown, so read the record first.
            let g = self.send("GET", &item, None, &[], device_id).await?;
            if let Some(outcome) = decode_check(op, wire, g.status, &g.body, g.etag.as_deref()) {
                return Ok(outcome);
            }
        }
        let req = request_for(op, wire);
        let headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = self.send(req.method, &self.url(&req.path), req.body.as_deref(), &headers, device_id).await?;
        let now = js_sys::Date::now() as u64;
        match decode(op, wire, a.status, &a.body, a.etag.as_deref(), a.retry_after.as_deref(), now) {
            Ok(Outcome::Failed(f)) if may_exist(op, &f) => {
                // A refused create whose record may be there already (our own earlier attempt whose
                // answer was lost, or another device's): json-server answers 500 to a duplicate id.
                let g = self.send("GET", &item, None, &[], device_id).await?;
                match g.status {
                    200..=299 => Ok(decode_fetched(wire, g.status, &g.body, g.etag.as_deref())),
                    _ => Ok(Outcome::Failed(f)),
                }
            }
            Ok(outcome) => Ok(outcome),
            Err(_needs_fetch) => {
                let g = self.send("GET", &item, None, &[], device_id).await?;
                Ok(decode_fetched(wire, g.status, &g.body, g.etag.as_deref()))
            }
        }
    }
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

impl Transport for FetchTransport {
    async fn push(&self, ops: &[Operation], device_id: &str) -> Result<PushResponse, Failure> {
        let is_rest = |o: &&Operation| self.collections.get(&o.collection).is_some_and(|c| c.wire == Wire::Rest);
        let (rest, batch): (Vec<&Operation>, Vec<&Operation>) = ops.iter().partition(is_rest);
        let mut response = PushResponse::default();
        if !batch.is_empty() {
            let batch: Vec<Operation> = batch.into_iter().cloned().collect();
            let body = encode_request(&batch, device_id, js_sys::Date::now() as u64);
            let url = self.url(&self.batch_endpoint);
            let answer = match self.send("POST", &url, Some(&body), &[], device_id).await {
                Ok(a) => decode_response(a.status, &a.body, a.retry_after.as_deref(), js_sys::Date::now() as u64),
                Err(f) => Err(f),
            };
            match answer {
                Ok(r) => response = r,
                // Nothing else to send: let the engine see the request's failure as a whole.
                Err(f) if rest.is_empty() => return Err(f),
                Err(f) => response.results.extend(
                    batch.iter().map(|o| OpResult { op_id: o.id.clone(), outcome: Outcome::Failed(f.clone()) }),
                ),
            }
        }
        for (i, op) in rest.iter().enumerate() {
            match self.push_rest(op, device_id).await {
                Ok(outcome) => response.results.push(OpResult { op_id: op.id.clone(), outcome }),
                Err(f) => {
                    // The network is down or the server unreachable: the rest would fail alike.
                    if i == 0 && response.results.is_empty() {
                        return Err(f);
                    }
                    for o in &rest[i..] {
                        response.results.push(OpResult { op_id: o.id.clone(), outcome: Outcome::Failed(f.clone()) });
                    }
                    break;
                }
            }
        }
        Ok(response)
    }

    async fn pull(&self, collection: &str, cursor: Option<&str>) -> Result<PullPage, Failure> {
        let wire = self
            .collections
            .get(collection)
            .ok_or_else(|| Failure::new(SyncError::InvalidInput(format!("unknown collection '{collection}'"))))?;
        let mut url = self.url(&wire.endpoint);
        if let Some(c) = cursor {
            url = with_param(&url, &wire.pull_param, c);
        }
        // A paginated full listing is followed to its end here: the engine sees one listing.
        let mut whole = PullPage::default();
        for _ in 0..MAX_LISTING_PAGES {
            let device = self.device_id.borrow().clone();
            let a = self.send("GET", &url, None, &[], &device).await?;
            let v = json_answer(a.status, &a.body, a.retry_after.as_deref(), js_sys::Date::now() as u64)?;
            // A whole collection in one answer (10,000 records: about 2.9 MB) is read in one task and
            // made into records in the next.
            sleep(0).await;
            let (page, next) = decode_listing(wire, &v)?;
            let Some(next) = next else {
                if whole.items.is_empty() {
                    return Ok(page);
                }
                whole.items.extend(page.items);
                return Ok(whole);
            };
            whole.items.extend(page.items);
            url = match next {
                Next::Url(u) => self.url(&u),
                Next::Param(name, value) => with_param(&url, name, &value),
            };
        }
        Err(Failure::new(SyncError::Protocol(format!(
            "the listing of '{collection}' did not end within {MAX_LISTING_PAGES} pages"
        ))))
    }
}

/// At most this many pages of one paginated listing.
const MAX_LISTING_PAGES: usize = 1_000;

/// `url` with the query parameter `name` set to `value` (replacing it if present).
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = format!("{path}?");
    for p in query.split('&').filter(|p| !p.is_empty() && p.split('=').next() != Some(name)) {
        out.push_str(p);
        out.push('&');
    }
    out.push_str(&super::rest::encode_segment(name));
    out.push('=');
    out.push_str(&super::rest::encode_segment(value));
    out
}

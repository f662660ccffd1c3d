//! The `Transport` over the browser's `fetch`: timeouts through `AbortController`, the auth
//! callback, and the debug tools' fault injection.

use std::cell::{Cell, RefCell};

use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestInit, RequestRedirect, Response, ResponseType};

use super::batch::{decode_response, encode_request, MAX_RESPONSE_BYTES};
use super::pull::decode_pull;
use super::rest::{decode, decode_fetched, encode_segment, request_for, CollectionWire, Wire};
use crate::core::error::SyncError;
use crate::core::op::Operation;
use crate::core::traits::{Failure, OpResult, Outcome, PullPage, PushResponse, Transport};
use crate::web::{clear_timeout, fetch_request, navigator_online, set_timeout, sleep};

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
        let headers = Headers::new().map_err(network)?;
        let set = |k: &str, v: &str| headers.set(k, v).map_err(network);
        if body.is_some() {
            set("Content-Type", "application/json")?;
        }
        if !device_id.is_empty() {
            set("X-Device-ID", device_id)?;
        }
        set("X-Client-Version", &self.client_version)?;
        if let Some(t) = &token {
            set("Authorization", &format!("Bearer {t}"))?;
        }
        for (k, v) in extra {
            set(k, v)?;
        }
        let controller = AbortController::new().map_err(network)?;
        let init = RequestInit::new();
        init.set_method(method);
        init.set_headers(&headers);
        init.set_redirect(RequestRedirect::Manual);
        init.set_signal(Some(&controller.signal()));
        if let Some(b) = body {
            init.set_body(&JsValue::from_str(b));
        }
        let request = Request::new_with_str_and_init(url, &init).map_err(network)?;
        let abort = Closure::once({
            let c = controller.clone();
            move || c.abort()
        });
        let timer = set_timeout(abort.as_ref().unchecked_ref(), self.timeout_ms as i32);
        self.requests.set(self.requests.get() + 1);
        let result = self.exchange(&request).await;
        clear_timeout(&timer);
        drop(abort);
        result.map_err(|f| if controller.signal().aborted() { Failure::new(SyncError::Timeout) } else { f })
    }

    async fn exchange(&self, request: &Request) -> Result<HttpAnswer, Failure> {
        let resp: Response = JsFuture::from(fetch_request(request)).await.map_err(network)?.unchecked_into();
        if resp.type_() == ResponseType::Opaqueredirect {
            return Err(Failure::new(SyncError::Protocol("the server answered with a redirect".into())));
        }
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        let etag = resp.headers().get("etag").ok().flatten();
        let length = resp.headers().get("content-length").ok().flatten().and_then(|l| l.parse::<usize>().ok());
        if length.is_some_and(|l| l > MAX_RESPONSE_BYTES) {
            return Err(Failure::new(SyncError::Protocol(format!(
                "the response is {} bytes; the limit is {MAX_RESPONSE_BYTES}",
                length.unwrap_or(0)
            ))));
        }
        let text = resp.text().map_err(network)?;
        let body = JsFuture::from(text).await.map_err(network)?.as_string().unwrap_or_default();
        Ok(HttpAnswer { status, body, retry_after, etag })
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
        let req = request_for(op, wire);
        let headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = self.send(req.method, &self.url(&req.path), req.body.as_deref(), &headers, device_id).await?;
        let now = js_sys::Date::now() as u64;
        match decode(op, wire, a.status, &a.body, a.etag.as_deref(), a.retry_after.as_deref(), now) {
            Ok(outcome) => Ok(outcome),
            Err(_needs_fetch) => {
                let url =
                    self.url(&format!("{}/{}", wire.endpoint.trim_end_matches('/'), encode_segment(&op.entity_id)));
                let g = self.send("GET", &url, None, &[], device_id).await?;
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

fn network(e: JsValue) -> Failure {
    Failure::new(SyncError::Network(describe(&e)))
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
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}{}={}", wire.pull_param, String::from(js_sys::encode_uri_component(c)));
        }
        let a = self.send("GET", &url, None, &[], "").await?;
        decode_pull(a.status, &a.body, a.retry_after.as_deref(), js_sys::Date::now() as u64)
    }
}

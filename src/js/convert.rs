//! Values across the JS boundary: JSON-compatible plain objects both ways, and the options of
//! `SyncEngine.open()`.

use std::collections::BTreeMap;

use js_sys::{Function, Reflect};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::engine::{CollectionConfig, EngineConfig};
use crate::core::error::{Result, SyncError};
use crate::core::merge::{MergeSpec, OnDeleted, Strategy};
use crate::core::netpolicy::NetPolicy;
use crate::core::op::Priority;
use crate::core::retry::RetryPolicy;
use crate::net::rest::{CollectionWire, UpdateMethod, VersionSource, Wire};

/// Rust value -> plain JS object (maps as objects, no BigInt).
pub fn to_js<T: Serialize + ?Sized>(v: &T) -> JsValue {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen(inline_js = r#"
const TAGS = new Set(['Map', 'Set', 'WeakMap', 'WeakSet', 'ArrayBuffer', 'SharedArrayBuffer', 'DataView']);
const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/;
function fix(s) {
  if (s.isWellFormed ? s.isWellFormed() : !LONE.test(s)) return s;
  if (s.toWellFormed) return s.toWellFormed();
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
    if (pair) { out += s[i] + s[i + 1]; i++; } else out += (c & 0xf800) === 0xd800 ? '\uFFFD' : s[i];
  }
  return out;
}
export function toJson(value) {
  return JSON.stringify(value, function (key, v) {
    if (typeof v === 'string') return fix(v);
    if (v !== null && typeof v === 'object') {
      const tag = Object.prototype.toString.call(v).slice(8, -1);
      if (TAGS.has(tag) || ArrayBuffer.isView(v)) {
        throw new TypeError(`${key ? `'${key}'` : 'the value'} is a ${tag}, which JSON cannot hold`);
      }
    }
    return v;
  });
}
"#)]
extern "C" {
    /// `JSON.stringify` with a replacer: a string with a lone surrogate (text cut in the middle of
    /// an emoji) gets U+FFFD there, as the browser's own encoders do; a Map, Set or binary buffer
    /// throws instead of becoming `{}`.
    #[wasm_bindgen(js_name = toJson, catch)]
    fn to_json(value: &JsValue) -> std::result::Result<JsValue, JsValue>;
}

/// A value from the app, through JSON text: `JSON.stringify` throws on a cycle or a `BigInt`, leaves
/// out `undefined` and functions and honours `toJSON()` (what `fetch` with a JSON body does), and
/// serde_json refuses nesting deeper than 128. Walking the JS object graph directly instead would
/// recurse without limit, and a stack overflow in wasm corrupts memory rather than failing.
fn json(v: &JsValue) -> std::result::Result<Value, String> {
    let text = to_json(v).map_err(|e| match e.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => e.as_string().unwrap_or_else(|| "it cannot be written as JSON".into()),
    })?;
    let text = text.as_string().ok_or("it has no JSON form")?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// JS value -> JSON value, as `INVALID_INPUT` when it does not fit.
pub fn from_js(v: JsValue, what: &str) -> Result<Value> {
    json(&v).map_err(|e| SyncError::InvalidInput(format!("{what}: {e}")))
}

/// A record from the app: a plain, JSON-compatible object.
pub fn record(v: JsValue) -> Result<Value> {
    // Plain: `{...}` or `Object.create(null)`, whose prototype chain ends right after
    // Object.prototype. A Date, Map, Set or class instance would not survive JSON as the app meant it.
    let plain = v.is_object() && !v.is_function() && {
        let proto = js_sys::Object::get_prototype_of(&v);
        proto.is_null() || js_sys::Object::get_prototype_of(&proto).is_null()
    };
    if !plain || js_sys::Array::is_array(&v) {
        return Err(SyncError::InvalidInput("a record must be a plain object".into()));
    }
    let value: Value = from_js(v, "the record is not JSON-compatible")?;
    if !value.is_object() {
        return Err(SyncError::InvalidInput("a record must be a plain object".into()));
    }
    Ok(value)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeOptions {
    default: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    on_deleted: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestOptions {
    update: Option<String>,
    version: Option<String>,
    pull_param: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionOptions {
    endpoint: String,
    merge: Option<MergeOptions>,
    priority: Option<String>,
    transport: Option<String>,
    rest: Option<RestOptions>,
}

fn wire_of(name: Option<&str>) -> Result<Option<Wire>> {
    match name {
        None => Ok(None),
        Some("batch") => Ok(Some(Wire::Batch)),
        Some("rest") => Ok(Some(Wire::Rest)),
        Some(other) => Err(SyncError::Config(format!("transport '{other}' (expected 'batch' or 'rest')"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreakerOptions {
    threshold: Option<u32>,
    cooldown_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOptions {
    name: String,
    user_id: Option<String>,
    base_url: Option<String>,
    collections: BTreeMap<String, CollectionOptions>,
    transport: Option<String>,
    batch_endpoint: Option<String>,
    timeout_ms: Option<u32>,
    retry: Option<RetryPolicy>,
    network: Option<NetPolicy>,
    breaker: Option<BreakerOptions>,
    #[serde(default)]
    debug: bool,
    auto_sync: Option<bool>,
}

/// `SyncEngine.open()`'s options, checked.
pub struct OpenOptions {
    pub db_name: String,
    pub base_url: String,
    pub batch_endpoint: String,
    pub timeout_ms: u32,
    pub auth: Option<Function>,
    pub debug: bool,
    pub auto_sync: bool,
    pub engine: EngineConfig,
    /// How each collection talks to the server.
    pub wires: BTreeMap<String, CollectionWire>,
    /// Collections with their own merge function: `resolve(base, local, server)`.
    pub resolvers: Vec<(String, Function)>,
}

pub fn open_options(v: JsValue) -> Result<OpenOptions> {
    if !v.is_object() {
        return Err(SyncError::Config("open() takes an options object".into()));
    }
    let auth = match Reflect::get(&v, &"auth".into()) {
        Ok(f) if f.is_function() => Some(f.unchecked_into::<Function>()),
        Ok(f) if f.is_undefined() || f.is_null() => None,
        _ => return Err(SyncError::Config("`auth` must be a function returning a token".into())),
    };
    let resolvers = resolvers(&v)?;
    // Checked as JSON first (a cycle would overflow the walk below), then read field by field.
    json(&v).map_err(SyncError::Config)?;
    let raw: RawOptions = serde_wasm_bindgen::from_value(v).map_err(|e| SyncError::Config(e.to_string()))?;
    if raw.name.is_empty() {
        return Err(SyncError::Config("`name` must not be empty".into()));
    }
    let default_wire = wire_of(raw.transport.as_deref())?.unwrap_or_default();
    let mut collections = BTreeMap::new();
    let mut wires = BTreeMap::new();
    for (name, c) in raw.collections {
        let rest = c.rest.as_ref();
        let update = match rest.and_then(|r| r.update.as_deref()) {
            None | Some("put") => UpdateMethod::Put,
            Some("patch") => UpdateMethod::Patch,
            Some(o) => return Err(SyncError::Config(format!("rest.update '{o}' (expected 'put' or 'patch')"))),
        };
        wires.insert(
            name.clone(),
            CollectionWire {
                endpoint: c.endpoint.clone(),
                wire: wire_of(c.transport.as_deref())?.unwrap_or(default_wire),
                update,
                version: rest.and_then(|r| r.version.as_deref()).map(VersionSource::parse).unwrap_or_default(),
                pull_param: rest.and_then(|r| r.pull_param.clone()).unwrap_or_else(|| "since".into()),
            },
        );
        if c.endpoint.is_empty() {
            return Err(SyncError::Config(format!("collection '{name}' needs an `endpoint`")));
        }
        let merge = match c.merge {
            None => MergeSpec::default(),
            Some(m) => MergeSpec {
                default: m.default.as_deref().map(Strategy::parse).transpose()?.unwrap_or_default(),
                fields: m.fields.iter().map(|(k, s)| Ok((k.clone(), Strategy::parse(s)?))).collect::<Result<_>>()?,
                on_deleted: match m.on_deleted.as_deref() {
                    None | Some("recreate") => OnDeleted::Recreate,
                    Some("accept") => OnDeleted::Accept,
                    Some(o) => {
                        return Err(SyncError::Config(format!("onDeleted '{o}' (expected 'recreate' or 'accept')")))
                    }
                },
            },
        };
        let priority = match c.priority.as_deref() {
            None => Priority::Medium,
            Some(p) => Priority::parse(p)
                .ok_or_else(|| SyncError::Config(format!("priority '{p}' (expected high, medium or low)")))?,
        };
        collections.insert(name, CollectionConfig { endpoint: c.endpoint, merge, priority });
    }
    let base_url = match raw.base_url {
        Some(u) => u,
        None => location_origin().ok_or_else(|| SyncError::Config("`baseUrl` is required here".into()))?,
    };
    let mut engine = EngineConfig { collections, ..EngineConfig::default() };
    if let Some(r) = raw.retry {
        engine.retry = r;
    }
    if let Some(n) = raw.network {
        engine.net_policy = n;
    }
    if let Some(b) = raw.breaker {
        engine.breaker_threshold = b.threshold.unwrap_or(engine.breaker_threshold);
        engine.breaker_cooldown_ms = b.cooldown_ms.unwrap_or(engine.breaker_cooldown_ms);
    }
    let user = raw.user_id.unwrap_or_else(|| "anonymous".into());
    Ok(OpenOptions {
        db_name: format!("tidesync:{}:{}", raw.name, user),
        base_url,
        batch_endpoint: raw.batch_endpoint.unwrap_or_else(|| "/api/sync/batch".into()),
        timeout_ms: raw.timeout_ms.unwrap_or(30_000).max(1),
        auth,
        debug: raw.debug,
        auto_sync: raw.auto_sync.unwrap_or(true),
        engine,
        wires,
        resolvers,
    })
}

/// Each collection's `resolve` function, if it has one.
fn resolvers(options: &JsValue) -> Result<Vec<(String, Function)>> {
    let collections = Reflect::get(options, &"collections".into()).unwrap_or(JsValue::UNDEFINED);
    if !collections.is_object() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let collections_obj: &js_sys::Object = collections.unchecked_ref();
    for name in js_sys::Object::keys(collections_obj).iter() {
        let col = Reflect::get(&collections, &name).unwrap_or(JsValue::UNDEFINED);
        let f = Reflect::get(&col, &"resolve".into()).unwrap_or(JsValue::UNDEFINED);
        match (name.as_string(), f.dyn_into::<Function>()) {
            (Some(n), Ok(f)) => out.push((n, f)),
            (Some(n), Err(f)) if !f.is_undefined() => {
                return Err(SyncError::Config(format!(
                    "collections.{n}.resolve must be a function (base, local, server) => merged"
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

fn location_origin() -> Option<String> {
    let loc = Reflect::get(&js_sys::global(), &"location".into()).ok()?;
    Reflect::get(&loc, &"origin".into()).ok()?.as_string()
}

//! Values across the JS boundary: JSON-compatible plain objects both ways, and the options of
//! `SyncEngine.open()`.

use crate::core::json::RECORD_DEPTH;
use js_sys::{Function, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::engine::{CollectionConfig, EngineConfig};
use crate::core::error::{Result, SyncError};
use crate::core::json::Fields;
use crate::core::merge::{MergeSpec, OnDeleted, Strategy};
use crate::core::op::Priority;
use crate::core::sorted::VecMap;
use crate::core::value::Value;
use crate::net::rest::{CollectionWire, UpdateMethod, VersionSource, Wire};

/// Rust value -> plain JS object (maps as objects, no BigInt), or `undefined` if it cannot be
/// converted. Our own types always convert (no non-finite number reaches them); the event
/// delivery relies on the `undefined` to drop one broken event without losing the others.
pub fn to_js_or_undefined<T: Serialize + ?Sized>(v: &T) -> JsValue {
    crate::web::json_to_js(v).unwrap_or(JsValue::UNDEFINED)
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
// The values inside `wrappers` levels of the text's own may nest `depth` deep.
export function toJson(value, depth, wrappers = 0) {
  const levels = new WeakMap();
  return JSON.stringify(value, function (key, v) {
    if (typeof v === 'string') return fix(v);
    if (v !== null && typeof v === 'object') {
      const tag = Object.prototype.toString.call(v).slice(8, -1);
      if (TAGS.has(tag) || ArrayBuffer.isView(v)) {
        throw new TypeError(`${key ? `'${key}'` : 'the value'} is a ${tag}, which JSON cannot hold`);
      }
      const level = (levels.get(this) ?? 0) + 1;
      if (level > depth + wrappers) throw new TypeError(`it nests more than ${depth} levels deep`);
      levels.set(v, level);
    }
    return v;
  });
}
const plain = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) &&
  ((p) => p === null || Object.getPrototypeOf(p) === null)(Object.getPrototypeOf(v));
// putMany's records as JSON texts of `size` records each, `[[id, data], ...]`: one crossing into the
// wasm per part, not several per record. Throws the message naming the first bad record.
export function recordsJson(list, size, depth) {
  if (!Array.isArray(list)) throw 'putMany takes an array of { id, data }';
  const out = [];
  for (let i = 0; i < list.length; i += size) {
    // The records before a bad one are written first: the first bad record of the list is named.
    const part = [];
    let bad;
    for (let k = i; k < Math.min(i + size, list.length) && !bad; k++) {
      const r = list[k]; // a hole in a sparse array is a record without an id
      if (typeof r?.id !== 'string') bad = `putMany: records[${k}] has no string \`id\``;
      else if (!plain(r.data)) bad = `putMany: records[${k}] a record must be a plain object`;
      else part.push([r.id, r.data]);
    }
    try {
      out.push(toJson(part, depth, 2));
    } catch {
      // Name the record; if each is fine alone (the part's text was too long), one text each.
      part.forEach((pair, k) => {
        try {
          out.push(toJson([pair], depth, 2));
        } catch (e) {
          throw `putMany: records[${i + k}] the record is not JSON-compatible: ${e?.message ?? e}`;
        }
      });
    }
    if (bad) throw bad;
  }
  return out;
}
"#)]
extern "C" {
    /// `putMany`'s records, checked, as JSON texts of `size` `[id, data]` pairs each; throws the
    /// message naming the first bad one.
    #[wasm_bindgen(js_name = recordsJson, catch)]
    fn records_json(list: &JsValue, size: u32, depth: u32) -> std::result::Result<js_sys::Array, JsValue>;
    /// `JSON.stringify` with a replacer: a string with a lone surrogate (text cut in the middle of
    /// an emoji) gets U+FFFD there, as the browser's own encoders do; a Map, Set or binary buffer
    /// throws instead of becoming `{}`; so does nesting deeper than `depth`.
    #[wasm_bindgen(js_name = toJson, catch)]
    fn to_json(value: &JsValue, depth: u32) -> std::result::Result<JsValue, JsValue>;
}

/// A value from the app, through JSON text: `JSON.stringify` throws on a cycle or a `BigInt`, leaves
/// out `undefined` and functions and honours `toJSON()` (what `fetch` with a JSON body does), and
/// nesting deeper than `depth` (at most 128) is refused. Walking the JS object graph directly instead
/// would recurse without limit, and a stack overflow in wasm corrupts memory rather than failing.
fn json(v: &JsValue, depth: u32) -> std::result::Result<Value, String> {
    crate::core::json::parse(&json_text(v, depth)?)
}

fn json_text(v: &JsValue, depth: u32) -> std::result::Result<String, String> {
    let text = to_json(v, depth).map_err(|e| match e.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => e.as_string().unwrap_or_else(|| "it cannot be written as JSON".into()),
    })?;
    text.as_string().ok_or_else(|| "it has no JSON form".into())
}

/// JS value -> JSON value, as `INVALID_INPUT` when it does not fit.
pub fn from_js(v: JsValue, what: &str) -> Result<Value> {
    nested_from_js(v, what, crate::core::json::MAX_DEPTH)
}

fn nested_from_js(v: JsValue, what: &str, depth: u32) -> Result<Value> {
    json(&v, depth).map_err(|e| SyncError::InvalidInput(format!("{what}: {e}")))
}

/// `putMany`'s records: an array of `{ id: string, data: object }`, each a plain, JSON-compatible
/// object, as `record` checks one. Checked and written as JSON at once (the app may change its
/// objects once the call returns); read into the wasm by `parse_records`.
pub fn records_text(list: &JsValue) -> Result<js_sys::Array> {
    records_json(list, 250, RECORD_DEPTH).map_err(|e| {
        SyncError::InvalidInput(e.as_string().unwrap_or_else(|| "putMany: the records cannot be read".into()))
    })
}

/// The records `records_text` wrote. Read at once, in the task of the call: a write called after
/// this one must not start its transaction first.
pub fn parse_records(texts: js_sys::Array) -> Result<Vec<(String, Value)>> {
    let invalid = |e: String| SyncError::InvalidInput(e);
    let mut out = Vec::new();
    for text in texts.iter() {
        let Value::Array(pairs) = crate::core::json::parse(&text.as_string().unwrap_or_default()).map_err(invalid)?
        else {
            return Err(invalid("putMany: the records cannot be read".into()));
        };
        for pair in pairs {
            let pair = match pair {
                Value::Array(pair) => <[Value; 2]>::try_from(pair).ok(),
                _ => None,
            };
            match pair {
                Some([Value::String(id), data]) if data.is_object() => out.push((id, data)),
                _ => return Err(invalid(format!("putMany: records[{}] a record must be a plain object", out.len()))),
            }
        }
    }
    Ok(out)
}

/// A record from the app: a plain, JSON-compatible object, nested at most `RECORD_DEPTH` deep.
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
    let value = nested_from_js(v, "the record is not JSON-compatible", RECORD_DEPTH)?;
    if !value.is_object() {
        return Err(SyncError::InvalidInput("a record must be a plain object".into()));
    }
    Ok(value)
}

fn wire_of(name: Option<&str>) -> Result<Option<Wire>> {
    match name {
        None => Ok(None),
        Some("batch") => Ok(Some(Wire::Batch)),
        Some("rest") => Ok(Some(Wire::Rest)),
        Some(other) => Err(SyncError::Config(format!("transport '{other}' (expected 'batch' or 'rest')"))),
    }
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
    pub wires: VecMap<String, CollectionWire>,
    /// Collections with their own merge function: `resolve(base, local, server)`.
    pub resolvers: Vec<(String, Function)>,
    /// The options as JSON text, for the store: `idb.js` reads the query indexes the collections
    /// declare (`collections[c].indexes`, checked by `index.js`) and keeps their keys.
    pub options: String,
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
    // Through JSON text, as app values are (functions such as `auth` and `resolve` are left out).
    let text = json_text(&v, crate::core::json::MAX_DEPTH).map_err(SyncError::Config)?;
    let mut options = read_options(crate::core::json::parse(&text).map_err(config)?, auth, resolvers)?;
    options.options = text;
    Ok(options)
}

fn config(e: String) -> SyncError {
    SyncError::Config(e)
}

fn read_options(v: Value, auth: Option<Function>, resolvers: Vec<(String, Function)>) -> Result<OpenOptions> {
    let mut raw = Fields::new(v, "options").map_err(config)?;
    let name = raw.str("name").map_err(config)?;
    if name.is_empty() {
        return Err(SyncError::Config("`name` must not be empty".into()));
    }
    let default_wire = wire_of(raw.opt_str("transport").map_err(config)?.as_deref())?.unwrap_or_default();
    let mut engine = EngineConfig::default();
    let mut wires = VecMap::new();
    let listed = raw.opt_object("collections", "collections").map_err(config)?;
    for (name, c) in listed.ok_or_else(|| config("options.collections: expected an object".into()))?.into_entries() {
        let (collection, wire) = read_collection(&name, c, default_wire)?;
        wires.insert(name.clone(), wire);
        engine.collections.insert(name, collection);
    }
    read_tuning(&mut raw, &mut engine).map_err(config)?;
    let base_url = match raw.opt_str("baseUrl").map_err(config)? {
        Some(u) => u,
        None => location_origin().ok_or_else(|| SyncError::Config("`baseUrl` is required here".into()))?,
    };
    let user = raw.opt_str("userId").map_err(config)?.unwrap_or_else(|| "anonymous".into());
    Ok(OpenOptions {
        db_name: db_name(&name, &user),
        base_url,
        batch_endpoint: raw.opt_str("batchEndpoint").map_err(config)?.unwrap_or_else(|| "/api/sync/batch".into()),
        timeout_ms: raw.opt_uint("timeoutMs", u32::MAX as u64).map_err(config)?.map_or(30_000, |t| t as u32).max(1),
        auth,
        debug: raw.opt_bool("debug").map_err(config)?.unwrap_or(false),
        auto_sync: raw.opt_bool("autoSync").map_err(config)?.unwrap_or(true),
        engine,
        wires,
        resolvers,
        options: String::new(),
    })
}

/// The IndexedDB database of app `name` for `user`. Its flush lock, its Background Sync tag and
/// its channel are named after it (`lock_name`, `sync_tag` and
/// `channel_name` in `js::engine`), and
/// `sw.js` reads the tag back: change all of them together.
pub fn db_name(name: &str, user: &str) -> String {
    format!("tidesync:{name}:{user}")
}

/// One entry of `collections`: its merge policy and priority, and how it talks to the server.
fn read_collection(name: &str, c: Value, default_wire: Wire) -> Result<(CollectionConfig, CollectionWire)> {
    let mut c = Fields::new(c, "collection").map_err(config)?;
    let endpoint = c.str("endpoint").map_err(|_| config(format!("collection '{name}' needs an `endpoint`")))?;
    if endpoint.is_empty() {
        return Err(SyncError::Config(format!("collection '{name}' needs an `endpoint`")));
    }
    let mut rest = c.opt_object("rest", "rest").map_err(config)?;
    let mut rest_str = |k: &str| rest.as_mut().map(|r| r.opt_str(k)).transpose().map(Option::flatten).map_err(config);
    let update = match rest_str("update")?.as_deref() {
        None | Some("put") => UpdateMethod::Put,
        Some("patch") => UpdateMethod::Patch,
        Some("post") => UpdateMethod::Post,
        Some(o) => return Err(SyncError::Config(format!("rest.update '{o}' (expected 'put', 'patch' or 'post')"))),
    };
    let version = rest_str("version")?.as_deref().map(VersionSource::parse).unwrap_or_default();
    let pull_param = rest_str("pullParam")?.unwrap_or_else(|| "since".into());
    let wire = wire_of(c.opt_str("transport").map_err(config)?.as_deref())?.unwrap_or(default_wire);
    let key = c.opt_str("key").map_err(config)?.unwrap_or_else(|| "id".into());
    if key.is_empty() {
        return Err(SyncError::Config(format!("collections.{name}.key must name a field")));
    }
    let merge = match c.opt_object("merge", "merge").map_err(config)? {
        None => MergeSpec::default(),
        Some(m) => read_merge(m, name)?,
    };
    let priority = match c.opt_str("priority").map_err(config)? {
        None => Priority::Medium,
        Some(p) => Priority::parse(&p)
            .ok_or_else(|| SyncError::Config(format!("priority '{p}' (expected high, medium or low)")))?,
    };
    let wire = CollectionWire { endpoint, wire, update, version, pull_param, key };
    Ok((CollectionConfig { merge, priority }, wire))
}

/// A collection's `merge` option.
fn read_merge(mut m: Fields, collection: &str) -> Result<MergeSpec> {
    let default = m.opt_str("default").map_err(config)?.as_deref().map(Strategy::parse).transpose()?;
    let on_deleted = match m.opt_str("onDeleted").map_err(config)?.as_deref() {
        None | Some("recreate") => OnDeleted::Recreate,
        Some("accept") => OnDeleted::Accept,
        Some(o) => return Err(SyncError::Config(format!("onDeleted '{o}' (expected 'recreate' or 'accept')"))),
    };
    let fields = match m.opt_object("fields", "merge.fields").map_err(config)? {
        None => VecMap::new(),
        Some(fields) => fields
            .into_entries()
            .map(|(k, s)| match s.as_str() {
                Some(s) => Ok((k, Strategy::parse(s)?)),
                None => Err(config(format!("merge.fields.{k}: expected a strategy name"))),
            })
            .collect::<Result<_>>()?,
    };
    let groups = groups(m.value("groups"), collection)?;
    Ok(MergeSpec { default: default.unwrap_or_default(), on_deleted, groups, fields })
}

/// The `retry`, `network` and `breaker` options, over the engine's defaults.
fn read_tuning(raw: &mut Fields, engine: &mut EngineConfig) -> std::result::Result<(), String> {
    if let Some(mut r) = raw.opt_object("retry", "retry")? {
        let p = &mut engine.retry;
        let mut ms = |k: &str, into: &mut u64| r.opt_uint(k, u64::MAX).map(|v| *into = v.unwrap_or(*into));
        ms("baseMs", &mut p.base_ms)?;
        ms("capMs", &mut p.cap_ms)?;
        ms("jitterMs", &mut p.jitter_ms)?;
        ms("maxAgeMs", &mut p.max_age_ms)?;
        let max_attempts = r.opt_uint("maxAttempts", u32::MAX as u64)?;
        p.max_attempts = max_attempts.map_or(p.max_attempts, |n| n as u32);
    }
    if let Some(mut n) = raw.opt_object("network", "network")? {
        let p = &mut engine.net_policy;
        let tiers = [
            ("good", "network.good", &mut p.good),
            ("fair", "network.fair", &mut p.fair),
            ("poor", "network.poor", &mut p.poor),
        ];
        for (k, what, tier) in tiers {
            if let Some(mut t) = n.opt_object(k, what)? {
                tier.interval_ms = t.opt_uint("intervalMs", u64::MAX)?.unwrap_or(tier.interval_ms);
                let size = t.opt_uint("batchSize", u32::MAX as u64)?;
                tier.batch_size = size.map_or(tier.batch_size, |s| s as usize);
            }
        }
    }
    if let Some(mut b) = raw.opt_object("breaker", "breaker")? {
        let threshold = b.opt_uint("threshold", u32::MAX as u64)?;
        engine.breaker_threshold = threshold.map_or(engine.breaker_threshold, |t| t as u32);
        engine.breaker_cooldown_ms = b.opt_uint("cooldownMs", u64::MAX)?.unwrap_or(engine.breaker_cooldown_ms);
    }
    Ok(())
}

/// `merge.groups`: arrays of field names, each merged as one unit.
fn groups(v: Option<Value>, collection: &str) -> Result<Vec<Vec<String>>> {
    let bad = || config(format!("collections.{collection}.merge.groups: expected arrays of field names"));
    let Some(v) = v else { return Ok(Vec::new()) };
    let groups = v.as_array().ok_or_else(bad)?;
    groups
        .iter()
        .map(|g| g.as_array().ok_or_else(bad)?.iter().map(|f| f.as_str().map(str::to_string).ok_or_else(bad)).collect())
        .collect()
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

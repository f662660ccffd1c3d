//! Conflict policies: per collection, per field, declared as data.
//!
//! Every conflict is a 3-way question: `base` (the last state the server acknowledged to us),
//! `local` (ours now) and `server` (theirs now). `None` means "no record" (never existed or deleted).

use serde::Serialize;

use super::checksum::canonical_json;
use super::error::{Result, SyncError};
use super::sorted::VecMap;
use super::value::{Map, Number, Value};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Last write wins, whole: the fields no other strategy names (and each field group) are one
    /// unit, taken whole from the side that changed it since base, or from the later write when
    /// both did (modification time, clock-skew corrected; equal times: the larger canonical JSON,
    /// the same answer on every device). Never a mix of two writes' fields within a unit.
    #[default]
    Lww,
    Server,
    Client,
    /// The larger number, or the later of two RFC 3339 times (`lastStudyDate`).
    Max,
    /// The smaller number, or the earlier of two RFC 3339 times.
    Min,
    /// Counters: the local change since base is added to the server's value.
    Sum,
    /// Sets: the union of both arrays.
    Union,
    /// Field-level 3-way merge, recursive into objects; both changed -> last write wins.
    Merge3,
    /// The app decides: the conflict waits in the conflict queue.
    Manual,
}

impl Strategy {
    pub fn parse(name: &str) -> Result<Strategy> {
        Ok(match name {
            "lww" => Strategy::Lww,
            "server" => Strategy::Server,
            "client" => Strategy::Client,
            "max" => Strategy::Max,
            "min" => Strategy::Min,
            "sum" => Strategy::Sum,
            "union" => Strategy::Union,
            "merge3" => Strategy::Merge3,
            "manual" => Strategy::Manual,
            other => {
                return Err(SyncError::Config(format!(
                    "unknown merge strategy '{other}' (expected lww, server, client, max, min, sum, union, merge3 or manual)"
                )))
            }
        })
    }
}

/// When the server deleted a record we changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeleted {
    /// Our change brings the record back (no local work is lost).
    #[default]
    Recreate,
    /// The deletion stands; our change is dropped (and logged).
    Accept,
}

/// A collection's merge declaration:
/// `{ default: 'lww', fields: { xp: 'sum' }, groups: [['grade', 'interval']], onDeleted: 'recreate' }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeSpec {
    pub default: Strategy,
    pub fields: VecMap<String, Strategy>,
    /// Fields that merge as one unit, whatever the default: taken whole from one side.
    pub groups: Vec<Vec<String>>,
    pub on_deleted: OnDeleted,
}

/// Everything a merge looks at besides the three states: who wrote last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stamps {
    /// When the local state was written, on the server's clock (skew corrected), ms.
    pub local_ms: u64,
    /// When the server's state was written, ms (0 if unknown).
    pub server_ms: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The merged state (`None`: the record is deleted).
    Merged(Option<Value>),
    /// Left to the app.
    Manual,
}

struct Manual;

/// Resolves a conflict by `spec`.
pub fn merge(
    spec: &MergeSpec,
    base: Option<&Value>,
    local: Option<&Value>,
    server: Option<&Value>,
    st: &Stamps,
) -> Resolution {
    // Equal sides agree, except for counters: two devices that each added 1 to the same base
    // hold equal values, and the answer is base + 2.
    let counts = spec.default == Strategy::Sum || spec.fields.values().any(|s| *s == Strategy::Sum);
    if local == server && !(counts && local.is_some()) {
        return Resolution::Merged(local.cloned());
    }
    match (local, server) {
        (Some(l), None) => {
            if spec.default == Strategy::Manual {
                return Resolution::Manual;
            }
            match spec.on_deleted {
                OnDeleted::Recreate => Resolution::Merged(Some(l.clone())),
                OnDeleted::Accept => Resolution::Merged(None),
            }
        }
        (None, Some(s)) => {
            // We deleted; the server changed the record meanwhile (or never saw our delete).
            let server_changed = base != Some(s);
            match spec.default {
                Strategy::Manual if server_changed => Resolution::Manual,
                Strategy::Server => Resolution::Merged(Some(s.clone())),
                Strategy::Lww | Strategy::Merge3 if server_changed && !local_wins(st, &Value::Null, s) => {
                    Resolution::Merged(Some(s.clone()))
                }
                _ => Resolution::Merged(None),
            }
        }
        (Some(l), Some(s)) => match merge_fields(spec, base, l, s, st) {
            Ok(v) => Resolution::Merged(Some(v)),
            Err(Manual) => Resolution::Manual,
        },
        (None, None) => Resolution::Merged(None),
    }
}

fn merge_fields(
    spec: &MergeSpec,
    base: Option<&Value>,
    l: &Value,
    s: &Value,
    st: &Stamps,
) -> std::result::Result<Value, Manual> {
    let (Value::Object(lm), Value::Object(sm)) = (l, s) else {
        return Ok(merge_value(spec.default, base, Some(l), Some(s), st)?.unwrap_or(Value::Null));
    };
    let empty = Map::new();
    let bm = base.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = lm.keys().chain(sm.keys()).chain(bm.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    // Units: each declared group, then (under `lww`) every field no strategy names. A unit comes
    // whole from one side.
    let grouped = |k: &str| spec.groups.iter().position(|g| g.iter().any(|f| f == k));
    let mut units: Vec<Vec<&String>> = vec![Vec::new(); spec.groups.len() + 1];
    let mut out = Map::new();
    for k in keys {
        let named = spec.fields.get(k.as_str()).copied();
        match (grouped(k), named) {
            (Some(g), _) => units[g].push(k),
            (None, None) if spec.default == Strategy::Lww => units[spec.groups.len()].push(k),
            (None, named) => {
                if let Some(v) = merge_value(named.unwrap_or(spec.default), bm.get(k), lm.get(k), sm.get(k), st)? {
                    out.insert(k.clone(), v);
                }
            }
        }
    }
    for unit in units.into_iter().filter(|u| !u.is_empty()) {
        let part = |m: &Map| -> Value {
            Value::Object(unit.iter().filter_map(|k| Some(((*k).clone(), m.get(k.as_str())?.clone()))).collect())
        };
        let (b, l, s) = (part(bm), part(lm), part(sm));
        let local = if l == s || s == b {
            true
        } else if l == b {
            false
        } else {
            match spec.default {
                Strategy::Manual => return Err(Manual),
                Strategy::Server => false,
                Strategy::Client => true,
                _ => local_wins(st, &l, &s),
            }
        };
        if let Value::Object(taken) = if local { l } else { s } {
            for (k, v) in taken {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
}

/// Merges one field. `None` in or out: the field is absent.
fn merge_value(
    strategy: Strategy,
    o: Option<&Value>,
    l: Option<&Value>,
    s: Option<&Value>,
    st: &Stamps,
) -> std::result::Result<Option<Value>, Manual> {
    match strategy {
        Strategy::Server => return Ok(s.cloned()),
        Strategy::Client => return Ok(l.cloned()),
        Strategy::Max | Strategy::Min => {
            if let Some((a, b)) = l.zip(s).and_then(|(l, s)| comparable(l, s)) {
                let pick_local = if strategy == Strategy::Max { a > b } else { a < b };
                return Ok(if pick_local { l } else { s }.cloned());
            }
        }
        Strategy::Sum => {
            if let Some(v) = sum(o, l, s) {
                return Ok(Some(v));
            }
        }
        Strategy::Union => {
            if let (Some(Value::Array(a)), Some(Value::Array(b))) = (l, s) {
                return Ok(Some(union(a, b)));
            }
        }
        _ => {}
    }
    // Three-way: take the side that changed since base.
    if l == s {
        return Ok(l.cloned());
    }
    if l == o {
        return Ok(s.cloned());
    }
    if s == o {
        return Ok(l.cloned());
    }
    match strategy {
        Strategy::Manual => Err(Manual),
        Strategy::Merge3 => match (l, s) {
            (Some(Value::Object(_)), Some(Value::Object(_))) => {
                let nested = MergeSpec { default: Strategy::Merge3, ..MergeSpec::default() };
                Ok(Some(merge_fields(&nested, o, l.unwrap_or(&Value::Null), s.unwrap_or(&Value::Null), st)?))
            }
            _ => Ok(pick(st, l, s)),
        },
        _ => Ok(pick(st, l, s)),
    }
}

/// Two values `max` and `min` can order, as numbers: two numbers, or two RFC 3339 time strings (as
/// ms). Anything else (a number against a string, text that is not a time) falls back to the
/// three-way merge.
fn comparable(l: &Value, s: &Value) -> Option<(f64, f64)> {
    match (l, s) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()),
        (Value::String(_), Value::String(_)) => Some((parse_time_ms(l)? as f64, parse_time_ms(s)? as f64)),
        _ => None,
    }
}

/// Whether `local` is the later write. Equal times: the larger canonical JSON wins, so that two
/// devices that each see the other's write as "server" pick the same one.
fn local_wins(st: &Stamps, local: &Value, server: &Value) -> bool {
    match st.local_ms.cmp(&st.server_ms) {
        std::cmp::Ordering::Equal => canonical_json(local) > canonical_json(server),
        later => later.is_gt(),
    }
}

fn pick(st: &Stamps, l: Option<&Value>, s: Option<&Value>) -> Option<Value> {
    let null = Value::Null;
    if local_wins(st, l.unwrap_or(&null), s.unwrap_or(&null)) { l } else { s }.cloned()
}

/// `server + (local - base)`, in integers when all three are integers.
fn sum(o: Option<&Value>, l: Option<&Value>, s: Option<&Value>) -> Option<Value> {
    let zero = Value::from(0);
    let (o, l, s) = (o.unwrap_or(&zero), l.unwrap_or(&zero), s.unwrap_or(&zero));
    if let (Some(o), Some(l), Some(s)) = (o.as_i64(), l.as_i64(), s.as_i64()) {
        return s.checked_add(l.checked_sub(o)?).map(Value::from);
    }
    let (o, l, s) = (o.as_f64()?, l.as_f64()?, s.as_f64()?);
    Number::from_f64(s + (l - o)).map(Value::Number)
}

/// Set union, ordered by canonical JSON so that `union(a, b) == union(b, a)`.
fn union(a: &[Value], b: &[Value]) -> Value {
    let mut items: Vec<(String, &Value)> = a.iter().chain(b).map(|v| (canonical_json(v), v)).collect();
    items.sort_by(|x, y| x.0.cmp(&y.0));
    items.dedup_by(|x, y| x.0 == y.0);
    Value::Array(items.into_iter().map(|(_, v)| v.clone()).collect())
}

/// A record's time: an RFC 3339 UTC timestamp (`2024-01-15T10:30:00.123Z`) or a number of ms.
pub fn parse_time_ms(v: &Value) -> Option<u64> {
    match v.as_f64() {
        Some(n) => (n.is_finite() && n >= 0.0).then_some(n as u64),
        None => super::time::parse_rfc3339(v.as_str()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn st(local_ms: u64, server_ms: u64) -> Stamps {
        Stamps { local_ms, server_ms }
    }

    fn spec(default: Strategy, fields: &[(&str, Strategy)]) -> MergeSpec {
        MergeSpec {
            default,
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            groups: Vec::new(),
            on_deleted: OnDeleted::Recreate,
        }
    }

    fn merged(r: Resolution) -> Value {
        match r {
            Resolution::Merged(Some(v)) => v,
            other => panic!("expected a merged record, got {other:?}"),
        }
    }

    #[test]
    fn merge3_keeps_the_fields_each_side_changed() {
        let base = json!({"a": 1, "b": 1, "c": 1});
        let local = json!({"a": 2, "b": 1, "c": 1});
        let server = json!({"a": 1, "b": 3, "c": 1});
        let r = merge(&spec(Strategy::Merge3, &[]), Some(&base), Some(&local), Some(&server), &st(1, 2));
        assert_eq!(merged(r), json!({"a": 2, "b": 3, "c": 1}));
    }

    #[test]
    fn lww_takes_the_later_record_whole() {
        // The reference design's progress rule: grade / interval / nextReview are never mixed.
        let base = json!({"grade": 1, "interval": 1, "nextReview": "d1"});
        let local = json!({"grade": 3, "interval": 1, "nextReview": "d1"});
        let server = json!({"grade": 1, "interval": 4, "nextReview": "d4"});
        let sp = spec(Strategy::Lww, &[]);
        assert_eq!(merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2))), server);
        assert_eq!(merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(3, 2))), local);
        // No base (both created the record): the later one, whole.
        assert_eq!(merged(merge(&sp, None, Some(&local), Some(&server), &st(3, 2))), local);
        // Only one side changed since base: that side, whatever the times say.
        assert_eq!(merged(merge(&sp, Some(&base), Some(&base), Some(&server), &st(9, 2))), server);
        assert_eq!(merged(merge(&sp, Some(&base), Some(&local), Some(&base), &st(1, 9))), local);
    }

    #[test]
    fn lww_ties_pick_the_same_write_on_every_device() {
        let (b, x1, x2) = (json!({"x": 0}), json!({"x": 1}), json!({"x": 2}));
        let sp = spec(Strategy::Lww, &[]);
        assert_eq!(merged(merge(&sp, Some(&b), Some(&x1), Some(&x2), &st(5, 4))), x1);
        assert_eq!(merged(merge(&sp, Some(&b), Some(&x1), Some(&x2), &st(4, 5))), x2);
        // Equal times: device A (local x1, server x2) and device B (local x2, server x1) agree.
        assert_eq!(merged(merge(&sp, Some(&b), Some(&x1), Some(&x2), &st(5, 5))), x2);
        assert_eq!(merged(merge(&sp, Some(&b), Some(&x2), Some(&x1), &st(5, 5))), x2);
    }

    #[test]
    fn named_fields_merge_alone_and_groups_merge_whole() {
        let mut sp = spec(Strategy::Merge3, &[("xp", Strategy::Sum)]);
        sp.groups = vec![vec!["grade".into(), "interval".into()]];
        let base = json!({"grade": 1, "interval": 1, "note": "n", "xp": 10});
        let local = json!({"grade": 3, "interval": 1, "note": "n", "xp": 12});
        let server = json!({"grade": 1, "interval": 4, "note": "m", "xp": 15});
        // The group comes whole from the later write (the server); `note` changed on one side only;
        // `xp` adds both increments.
        let r = merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2)));
        assert_eq!(r, json!({"grade": 1, "interval": 4, "note": "m", "xp": 17}));
        // Under lww the rest is one unit too, and the named field still merges alone.
        sp.default = Strategy::Lww;
        let r = merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(3, 2)));
        assert_eq!(r, json!({"grade": 3, "interval": 1, "note": "m", "xp": 17}));
    }

    #[test]
    fn counters_sets_and_extremes() {
        let sp = spec(
            Strategy::Lww,
            &[("xp", Strategy::Sum), ("tags", Strategy::Union), ("best", Strategy::Max), ("low", Strategy::Min)],
        );
        let base = json!({"xp": 10, "tags": ["a"], "best": 5, "low": 5});
        let local = json!({"xp": 15, "tags": ["a", "b"], "best": 7, "low": 4});
        let server = json!({"xp": 13, "tags": ["c", "a"], "best": 9, "low": 6});
        let r = merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2)));
        assert_eq!(r, json!({"xp": 18, "tags": ["a", "b", "c"], "best": 9, "low": 4}));
    }

    #[test]
    fn equal_counters_are_two_increments() {
        // Both devices added 1 to 14: the sides are equal but neither increment may be lost.
        let sp = spec(Strategy::Lww, &[("n", Strategy::Sum)]);
        let (base, side) = (json!({"n": 14, "x": 1}), json!({"n": 15, "x": 1}));
        assert_eq!(merged(merge(&sp, Some(&base), Some(&side), Some(&side), &st(1, 2))), json!({"n": 16, "x": 1}));
        // Without a sum field, equal sides simply agree.
        let sp = spec(Strategy::Lww, &[("n", Strategy::Max)]);
        assert_eq!(merged(merge(&sp, Some(&base), Some(&side), Some(&side), &st(1, 2))), side);
    }

    #[test]
    fn merge3_recurses_into_objects() {
        let sp = spec(Strategy::Merge3, &[]);
        let base = json!({"p": {"a": 1, "b": 1}});
        let local = json!({"p": {"a": 2, "b": 1}});
        let server = json!({"p": {"a": 1, "b": 2}});
        assert_eq!(
            merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2))),
            json!({"p": {"a": 2, "b": 2}})
        );
    }

    #[test]
    fn manual_only_when_both_sides_changed_a_field() {
        let sp = spec(Strategy::Manual, &[]);
        let base = json!({"a": 1, "b": 1});
        let one_sided =
            merge(&sp, Some(&base), Some(&json!({"a": 2, "b": 1})), Some(&json!({"a": 1, "b": 2})), &st(1, 2));
        assert_eq!(merged(one_sided), json!({"a": 2, "b": 2}));
        let both = merge(&sp, Some(&base), Some(&json!({"a": 2, "b": 1})), Some(&json!({"a": 3, "b": 1})), &st(1, 2));
        assert_eq!(both, Resolution::Manual);
    }

    #[test]
    fn deletions() {
        let l = json!({"a": 1});
        let mut sp = spec(Strategy::Lww, &[]);
        assert_eq!(merge(&sp, Some(&l), Some(&l), None, &st(1, 2)), Resolution::Merged(Some(l.clone())));
        sp.on_deleted = OnDeleted::Accept;
        assert_eq!(merge(&sp, Some(&l), Some(&l), None, &st(1, 2)), Resolution::Merged(None));
        // We deleted, the server did not change since our base: the delete stands.
        assert_eq!(merge(&sp, Some(&l), None, Some(&l), &st(1, 2)), Resolution::Merged(None));
        // We deleted, the server changed later: its change wins under lww.
        let s2 = json!({"a": 2});
        assert_eq!(merge(&sp, Some(&l), None, Some(&s2), &st(1, 2)), Resolution::Merged(Some(s2.clone())));
        assert_eq!(merge(&sp, Some(&l), None, Some(&s2), &st(3, 2)), Resolution::Merged(None));
    }

    #[test]
    fn unknown_strategy_is_a_config_error() {
        assert_eq!(Strategy::parse("newest").unwrap_err().code(), "CONFIG");
        assert_eq!(Strategy::parse("merge3").unwrap(), Strategy::Merge3);
    }

    #[test]
    fn reference_stats_merge() {
        // sync-architecture.md "Statistics Merge": max of the totals, the server's streak,
        // the latest study date.
        let sp = spec(
            Strategy::Lww,
            &[
                ("totalCardsStudied", Strategy::Max),
                ("totalStudyTime", Strategy::Max),
                ("currentStreak", Strategy::Server),
                ("lastStudyDate", Strategy::Max),
            ],
        );
        let base = json!({"totalCardsStudied": 10, "totalStudyTime": 100, "currentStreak": 2, "lastStudyDate": 1_700_000_000_000u64});
        let local = json!({"totalCardsStudied": 14, "totalStudyTime": 130, "currentStreak": 5, "lastStudyDate": 1_700_000_500_000u64});
        let server = json!({"totalCardsStudied": 12, "totalStudyTime": 160, "currentStreak": 3, "lastStudyDate": 1_700_000_100_000u64});
        let r = merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2)));
        assert_eq!(
            r,
            json!({"totalCardsStudied": 14, "totalStudyTime": 160, "currentStreak": 3, "lastStudyDate": 1_700_000_500_000u64})
        );
    }

    #[test]
    fn max_and_min_order_rfc3339_times() {
        let sp = spec(Strategy::Lww, &[("last", Strategy::Max), ("first", Strategy::Min)]);
        let base = json!({"last": "2024-01-13T00:00:00Z", "first": "2024-01-13T00:00:00Z"});
        // Fractions and offsets spelled differently still order by time, not by text.
        let local = json!({"last": "2024-01-14T09:00:00.5Z", "first": "2024-01-12T23:59:59.999+00:00"});
        let server = json!({"last": "2024-01-14T09:00:00.123456Z", "first": "2024-01-13T00:00:00.5Z"});
        // The server's write is the later one: a fallback to last-write-wins would take its fields.
        let r = merged(merge(&sp, Some(&base), Some(&local), Some(&server), &st(1, 2)));
        assert_eq!(r, json!({"last": "2024-01-14T09:00:00.5Z", "first": "2024-01-12T23:59:59.999+00:00"}));
        // A string that is not a time is not ordered: the three-way merge decides.
        let (l, s) = (json!({"last": "soon"}), json!({"last": "2024-01-14T09:00:00Z"}));
        assert_eq!(merged(merge(&sp, None, Some(&l), Some(&s), &st(1, 2))), s);
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_time_ms(&json!("1994-11-06T08:49:37Z")), Some(784_111_777_000));
        assert_eq!(parse_time_ms(&json!("1994-11-06T08:49:37.5Z")), Some(784_111_777_500));
        assert_eq!(parse_time_ms(&json!("1994-11-06T08:49:37.123456+00:00")), Some(784_111_777_123));
        assert_eq!(parse_time_ms(&json!(12)), Some(12));
        assert_eq!(parse_time_ms(&json!("yesterday")), None);
        assert_eq!(parse_time_ms(&json!("1994-13-06T08:49:37Z")), None);
    }
}

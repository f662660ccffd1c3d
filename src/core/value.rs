//! A JSON value: what records, payloads and server answers are inside tidesync.
//!
//! The same shape as `serde_json::Value` (whose API it follows where tidesync needs it), with objects
//! on a sorted `Vec` (`VecMap`) instead of a B-tree: the B-tree's node code was about 14 KB of the
//! wasm, and the objects of records hold a handful of fields. Keys iterate in sorted order, as with
//! serde_json's default `Map`. `Display` is `core::json`'s text, which spells numbers as JS does
//! (`1.0` is `1`, `1e21` is `1e+21`). `json!` builds a value from a literal.

use std::fmt;

use serde::ser::{Serialize, Serializer};

use super::sorted::VecMap;

/// A JSON object: keys in sorted order.
pub type Map = VecMap<String, Value>;

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON number: an integer when it is one (as `u64` or `i64`), otherwise a finite `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number(N);

#[derive(Clone, Copy, Debug, PartialEq)]
enum N {
    /// Zero and up.
    PosInt(u64),
    /// Below zero.
    NegInt(i64),
    /// Finite.
    Float(f64),
}

impl Number {
    /// `None` for NaN and the infinities, which JSON cannot hold.
    pub fn from_f64(f: f64) -> Option<Number> {
        f.is_finite().then_some(Number(N::Float(f)))
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            N::PosInt(u) => Some(u),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            N::PosInt(u) => i64::try_from(u).ok(),
            N::NegInt(i) => Some(i),
            N::Float(_) => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        Some(match self.0 {
            N::PosInt(u) => u as f64,
            N::NegInt(i) => i as f64,
            N::Float(f) => f,
        })
    }

    pub fn is_f64(&self) -> bool {
        matches!(self.0, N::Float(_))
    }
}

impl From<u64> for Number {
    fn from(u: u64) -> Number {
        Number(N::PosInt(u))
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Number {
        Number(if i < 0 { N::NegInt(i) } else { N::PosInt(i as u64) })
    }
}

static NULL: Value = Value::Null;

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    /// A number that is not an integer.
    pub fn is_f64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_f64())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The field `key` of an object (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_object_mut()?.get_mut(key)
    }

    /// The value, leaving `null` in its place.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }
}

/// `value["field"]`: the field, or `null` when it is missing or `value` is not an object.
impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

/// `value["field"] = v`: sets the field, adding it when missing; a value that is not an object
/// becomes an empty one first.
impl std::ops::IndexMut<&str> for Value {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        if !self.is_object() {
            *self = Value::Object(Map::new());
        }
        let map = self.as_object_mut().expect("an object now");
        if !map.contains_key(key) {
            map.insert(key.into(), Value::Null);
        }
        map.get_mut(key).expect("inserted above")
    }
}

/// `value[i]`: the element, or `null` when it is missing or `value` is not an array.
impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
    }
}

/// Compact JSON text.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::json::text(self))
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(Number(N::PosInt(u))) => s.serialize_u64(*u),
            Value::Number(Number(N::NegInt(i))) => s.serialize_i64(*i),
            Value::Number(Number(N::Float(f))) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => s.collect_seq(a),
            Value::Object(m) => m.serialize(s),
        }
    }
}

macro_rules! from_integers {
    ($via:ty: $($t:ty),*) => {
        $(impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(Number::from(n as $via))
            }
        })*
    };
}
from_integers!(u64: u8, u16, u32, u64, usize);
from_integers!(i64: i8, i16, i32, i64, isize);

impl From<f64> for Value {
    /// NaN and the infinities are `null`, as `JSON.stringify` writes them.
    fn from(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

impl From<f32> for Value {
    fn from(f: f32) -> Value {
        Value::from(f64::from(f))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.into())
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}

impl From<&Value> for Value {
    fn from(v: &Value) -> Value {
        v.clone()
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Clone + Into<Value>> From<&[T]> for Value {
    fn from(items: &[T]) -> Value {
        Value::Array(items.iter().cloned().map(Into::into).collect())
    }
}

/// `None` is `null`.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

/// A `Value` from a JSON-like literal: `json!({"title": "hi", "tags": ["a", n], "done": null})`.
/// Keys are string literals or `(expressions)`; values are literals, nested arrays and objects, or any
/// expression with a `Value::from`.
#[macro_export]
macro_rules! json {
    (null) => { $crate::core::value::Value::Null };
    ([ $($t:tt)* ]) => { $crate::core::value::Value::Array($crate::json!(@array [] $($t)*)) };
    ({ $($t:tt)* }) => {
        $crate::core::value::Value::Object({
            #[allow(unused_mut)]
            let mut map = $crate::core::value::Map::new();
            $crate::json!(@object map $($t)*);
            map
        })
    };
    ($e:expr) => { $crate::core::value::Value::from($e) };

    // Array elements, one at a time into `[done, ...]`.
    (@array [$($done:expr),*]) => { ::std::vec![$($done),*] };
    (@array [$($done:expr),*] null $(, $($rest:tt)*)?) => {
        $crate::json!(@array [$($done,)* $crate::core::value::Value::Null] $($($rest)*)?)
    };
    (@array [$($done:expr),*] [$($v:tt)*] $(, $($rest:tt)*)?) => {
        $crate::json!(@array [$($done,)* $crate::json!([$($v)*])] $($($rest)*)?)
    };
    (@array [$($done:expr),*] {$($v:tt)*} $(, $($rest:tt)*)?) => {
        $crate::json!(@array [$($done,)* $crate::json!({$($v)*})] $($($rest)*)?)
    };
    (@array [$($done:expr),*] $v:expr $(, $($rest:tt)*)?) => {
        $crate::json!(@array [$($done,)* $crate::core::value::Value::from($v)] $($($rest)*)?)
    };

    // Object fields, one `key: value` at a time into `map`.
    (@object $map:ident) => {};
    (@object $map:ident $k:tt : null $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::String::from($k), $crate::core::value::Value::Null);
        $crate::json!(@object $map $($($rest)*)?);
    };
    (@object $map:ident $k:tt : [$($v:tt)*] $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::String::from($k), $crate::json!([$($v)*]));
        $crate::json!(@object $map $($($rest)*)?);
    };
    (@object $map:ident $k:tt : {$($v:tt)*} $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::String::from($k), $crate::json!({$($v)*}));
        $crate::json!(@object $map $($($rest)*)?);
    };
    (@object $map:ident $k:tt : $v:expr $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::String::from($k), $crate::core::value::Value::from($v));
        $crate::json!(@object $map $($($rest)*)?);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_builds_what_the_literal_says() {
        let n = 3u64;
        let name = String::from("k");
        let v = crate::json!({
            "b": [1, -2, 1.5, "s", null, true, [], {}, [n, {"x": null}]],
            "a": {"nested": {"deep": [false]}},
            (name): n,
            "none": Option::<u64>::None,
            "neg": -0.0,
        });
        assert_eq!(
            v.to_string(),
            r#"{"a":{"nested":{"deep":[false]}},"b":[1,-2,1.5,"s",null,true,[],{},[3,{"x":null}]],"k":3,"neg":0,"none":null}"#
        );
        assert_eq!(v["b"][3], Value::from("s"));
        assert_eq!(v["missing"]["and more"], Value::Null);
        assert_eq!(v["b"][99], Value::Null);
        assert_eq!(crate::json!(null), Value::Null);
        assert_eq!(crate::json!([]), Value::Array(vec![]));
        assert_eq!(crate::json!(f64::NAN), Value::Null, "JSON has no NaN");
    }

    #[test]
    fn numbers_keep_integers_apart_from_floats() {
        assert_eq!(Value::from(-1).as_i64(), Some(-1));
        assert_eq!(Value::from(-1).as_u64(), None);
        assert_eq!(Value::from(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::from(u64::MAX).as_i64(), None);
        assert_eq!(Value::from(2.0).as_u64(), None, "a float is not an integer, even when whole");
        assert_ne!(Value::from(2.0), Value::from(2));
        assert_eq!(Value::from(2.5).as_f64(), Some(2.5));
        assert!(Number::from_f64(f64::INFINITY).is_none());
    }
}

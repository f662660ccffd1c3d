//! Canonical JSON and SHA-256 checksums.
//!
//! The canonical form has sorted object keys, no insignificant whitespace and one spelling per
//! number, so the client and the server compute the same checksum for the same record whatever
//! produced it (a JS object, a Rust map, a database row).

use super::json::write_string;
use super::value::Value;

/// Writes `value` in canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Keys in sorted (byte) order: `Map` keeps them so.
            out.push('{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
    }
}

/// Integers print as integers; a float with an integral value that a JS number holds exactly
/// prints as that integer (JS has one number type: `1.0` and `1` are the same value); `-0` is `0`.
fn write_number(n: &crate::core::value::Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
        if f.fract() == 0.0 && f.abs() <= MAX_SAFE {
            let _ = write!(out, "{}", f as i64);
        } else {
            // Rust's shortest round-trip formatting, the same digits JS prints.
            let _ = write!(out, "{f:e}");
        }
    }
}

/// Lower-case hex SHA-256 of the canonical form of `value`.
pub fn checksum(value: &Value) -> String {
    hex(&super::sha256::sha256(canonical_json(value).as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v: Value = crate::core::json::parse(r#"{ "b": 1, "a": { "d": [1, 2], "c": null } }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":null,"d":[1,2]},"b":1}"#);
    }

    #[test]
    fn one_spelling_per_number() {
        assert_eq!(canonical_json(&json!(1.0)), "1");
        assert_eq!(canonical_json(&json!(-0.0)), "0");
        assert_eq!(canonical_json(&json!(1.5)), "1.5e0");
        assert_eq!(canonical_json(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(checksum(&json!({"x": 2.0})), checksum(&json!({"x": 2})));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(canonical_json(&json!("a\"b\\\n\u{1}é")), r#""a\"b\\\n\u0001é""#);
    }

    #[test]
    fn checksum_is_stable_sha256() {
        // sha256("{}")
        assert_eq!(checksum(&json!({})), "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_ne!(checksum(&json!({"a": 1})), checksum(&json!({"a": 2})));
    }
}

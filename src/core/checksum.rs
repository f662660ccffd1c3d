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
            write_scientific(f, out);
        }
    }
}

/// The shortest digits that read back as the same double, the nearest of them to it (a tie
/// rounded away from zero), as `d.ddde<exp>`: Rust's `{:e}` spelling (`1.5e0`, `1e21`, `1.5e-7`).
#[cfg(not(target_arch = "wasm32"))]
fn write_scientific(f: f64, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{f:e}");
}

/// In the browser, without float formatting in the wasm: the length of the shortest digits is
/// that of `String(f)`, and `f.toPrecision(length)` gives the nearest digits of that length with
/// ties away from zero, exactly as `{:e}` picks them (`String` itself may pick the other of two
/// equally near spellings). Checked against `{:e}` for 400,000 doubles, 11,566 of them such ties,
/// and in the wasm test suite (`a_checksum_spells_floats_as_the_server_does`).
#[cfg(target_arch = "wasm32")]
fn write_scientific(f: f64, out: &mut String) {
    scientific(&crate::web::shortest_nearest_digits(f), out);
}

/// Rewrites a number as JS spells it (`0.000015`, `123.45`, `1e+21`, `-1.5e-7`) in the canonical
/// `d.ddde<exp>` form (`1.5e-5`, `1.2345e2`, `1e21`, `-1.5e-7`), digits unchanged.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn scientific(es: &str, out: &mut String) {
    use std::fmt::Write;
    let (sign, es) = match es.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", es),
    };
    let (mantissa, exp) = match es.split_once('e') {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i32>().unwrap_or(0)),
        None => (es, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [int, frac].concat();
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all[lead..].trim_end_matches('0');
    let exp = exp + int.len() as i32 - 1 - lead as i32;
    let (first, rest) = digits.split_at(1.min(digits.len()));
    out.push_str(sign);
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
    let _ = write!(out, "e{exp}");
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
    fn scientific_rewrites_js_spellings_digit_for_digit() {
        for (es, sci) in [
            ("0.000015", "1.5e-5"),
            ("123.45", "1.2345e2"),
            ("1e+21", "1e21"),
            ("-1.5e-7", "-1.5e-7"),
            ("0.1", "1e-1"),
            ("100.5", "1.005e2"),
            ("9007199254740993", "9.007199254740993e15"),
            ("123456789012345.13", "1.2345678901234513e14"),
            ("5e-324", "5e-324"),
        ] {
            let mut out = String::new();
            scientific(es, &mut out);
            assert_eq!(out, sci, "{es}");
        }
    }

    #[test]
    fn the_documented_vectors_hold() {
        // docs/checksum.md defines the form for servers; its table is checked here.
        let doc = include_str!("../../docs/checksum.md");
        let cell = |c: &str| c.trim().trim_matches('`').to_string();
        let mut rows = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<String> = line.trim_matches('|').split(" | ").map(cell).collect();
            let [input, canonical, sum] = &cells[..] else { panic!("{line}") };
            let v = crate::core::json::parse(input).unwrap();
            assert_eq!(&canonical_json(&v), canonical, "{input}");
            assert_eq!(&checksum(&v), sum, "{input}");
            rows += 1;
        }
        assert_eq!(rows, 8);
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

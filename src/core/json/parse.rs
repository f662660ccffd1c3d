//! JSON text -> `Value` (`core::value`): every JSON document tidesync reads (server answers, records
//! from IndexedDB, values from the app) goes through this one parser.
//!
//! Own code rather than serde_json's deserializer, for size: that deserializer and its exact
//! float parser (with its tables of powers) were about 25 KB of the wasm. This one reads the same
//! grammar (RFC 8259) into the same `Value`s: integers as `u64`/`i64`, everything else as `f64`
//! (`-0` too), duplicate keys keep the last, nesting deeper than 128 is refused, a `\u` escape
//! must not leave half a surrogate pair. Floats are exact: the common short ones by exact
//! arithmetic, the others by the platform's correctly rounded parser (the browser's own, which
//! `JSON.parse` uses; `core`'s natively).

use crate::core::value::{Map, Number, Value};

/// How deep arrays and objects may nest (serde_json's limit, and what the engine's recursive
/// code on values is sized for).
pub const MAX_DEPTH: u32 = 128;

/// How deep an app's record may nest. The engine wraps a record in up to five levels of its own where
/// it sends it (a batch, a 409 answer) and stores it (a page of entities, an op, a dead letter), and
/// every reader on the way stops near 128 (this parser at 128, `serde_json` at 127).
pub const RECORD_DEPTH: u32 = MAX_DEPTH - 8;

/// Parses one JSON document. The error says what is wrong and where (line and column, from 1).
pub fn parse(text: &str) -> Result<Value, String> {
    parse_nested(text, MAX_DEPTH, 0)
}

/// `parse` with another limit: the values the text carries, inside `wrappers` levels of its own
/// (putMany's `[[id, data], ...]`), may nest `depth` deep.
pub fn parse_nested(text: &str, depth: u32, wrappers: u32) -> Result<Value, String> {
    let mut p = Parser { s: text, i: 0, depth: 0, limit: depth + wrappers, wrappers };
    let v = p.value()?;
    p.ws();
    if p.i < text.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: u32,
    limit: u32,
    wrappers: u32,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        let done = &self.s.as_bytes()[..self.i.min(self.s.len())];
        let line = done.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = done.len() - done.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1) + 1;
        format!("{what} at line {line} column {column}")
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += hit as usize;
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        Ok(match self.peek() {
            Some(b'{') => Value::Object(self.object()?),
            Some(b'[') => Value::Array(self.array()?),
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(_) => return Err(self.err("expected a value")),
            None => return Err(self.err("unexpected end of input")),
        })
    }

    fn word(&mut self, word: &str, v: Value) -> Result<Value, String> {
        if !self.s[self.i..].starts_with(word) {
            return Err(self.err("expected a value"));
        }
        self.i += word.len();
        Ok(v)
    }

    /// Steps into an array or object (past its opening bracket); true when it is empty.
    fn open(&mut self, close: u8) -> Result<bool, String> {
        if self.depth == self.limit {
            return Err(self.err(&format!("nested more than {} deep", self.limit - self.wrappers)));
        }
        self.depth += 1;
        self.i += 1;
        self.ws();
        Ok(self.eat(close))
    }

    /// After an element: true at the closing bracket, false at a comma.
    fn next(&mut self, close: u8, what: &str) -> Result<bool, String> {
        self.ws();
        if self.eat(b',') {
            return Ok(false);
        }
        if self.eat(close) {
            self.depth -= 1;
            return Ok(true);
        }
        Err(self.err(what))
    }

    fn array(&mut self) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        if self.open(b']')? {
            self.depth -= 1;
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            if self.next(b']', "expected `,` or `]`")? {
                return Ok(items);
            }
        }
    }

    fn object(&mut self) -> Result<Map, String> {
        // Collected, then sorted once (a key-by-key sorted insert is quadratic in the object's size).
        let mut fields = Vec::new();
        if self.open(b'}')? {
            self.depth -= 1;
            return Ok(Map::new());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(b':') {
                return Err(self.err("expected `:`"));
            }
            fields.push((key, self.value()?));
            if self.next(b'}', "expected `,` or `}`")? {
                // A repeated key: the last one wins, as in `JSON.parse`.
                return Ok(fields.into_iter().collect());
            }
        }
    }

    /// A string, at its opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        let mut start = self.i;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            match b {
                b'"' | b'\\' => {
                    // Both ASCII, so the slice ends on a character boundary.
                    out.push_str(&self.s[start..self.i]);
                    self.i += 1;
                    if b == b'"' {
                        return Ok(out);
                    }
                    let escape = self.peek();
                    self.i += 1;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode()?,
                        _ => return Err(self.err("invalid escape")),
                    };
                    out.push(c);
                    start = self.i;
                }
                0..=0x1f => return Err(self.err("control character in a string")),
                _ => self.i += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.as_bytes().get(self.i..self.i + 4).ok_or_else(|| self.err("unexpected end of input"))?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16).ok_or_else(|| self.err("invalid \\u escape"))?;
        }
        self.i += 4;
        Ok(n)
    }

    /// The character of a `\u` escape (past the `u`), reading the second half of a surrogate pair.
    fn unicode(&mut self) -> Result<char, String> {
        let mut n = self.hex4()?;
        if (0xD800..0xDC00).contains(&n) {
            if self.s.as_bytes().get(self.i..self.i + 2) != Some(b"\\u") {
                return Err(self.err("half a surrogate pair in a \\u escape"));
            }
            self.i += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.err("half a surrogate pair in a \\u escape"));
            }
            n = 0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00);
        }
        char::from_u32(n).ok_or_else(|| self.err("half a surrogate pair in a \\u escape"))
    }

    fn digits(&mut self) -> Result<(), String> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err("invalid number"));
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Number, String> {
        let start = self.i;
        let negative = self.eat(b'-');
        if self.eat(b'0') {
            if matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("invalid number (a leading zero)"));
            }
        } else {
            self.digits()?;
        }
        let int_end = self.i;
        let mut float = false;
        if self.eat(b'.') {
            float = true;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits()?;
        }
        if !float {
            if let Ok(n) = self.s[start + negative as usize..int_end].parse::<u64>() {
                if !negative {
                    return Ok(n.into());
                }
                // As serde_json: `-0` is the float -0.0.
                if n != 0 && n <= 1 << 63 {
                    return Ok((n as i64).wrapping_neg().into());
                }
            }
        }
        let f = float_from(&self.s[start..self.i]);
        Number::from_f64(f).ok_or_else(|| self.err("number out of range"))
    }
}

/// A float from JSON number text (already checked against the grammar), correctly rounded.
fn float_from(text: &str) -> f64 {
    fast_float(text).unwrap_or_else(|| slow_float(text))
}

/// In the browser: the browser's own parser (the one `JSON.parse` uses), no tables in the wasm.
#[cfg(target_arch = "wasm32")]
fn slow_float(text: &str) -> f64 {
    crate::web::parse_float(text)
}

#[cfg(not(target_arch = "wasm32"))]
fn slow_float(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

/// Clinger's fast path: at most 15 significant digits and a power of ten up to 10^22 are both
/// exact doubles, so one multiplication or division rounds once, correctly. `None` otherwise.
pub(crate) fn fast_float(text: &str) -> Option<f64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut m: u64 = 0;
    let mut digits = 0;
    for b in int.bytes().chain(frac.bytes()) {
        m = m * 10 + u64::from(b - b'0');
        digits += (m != 0) as u32;
        if digits > 15 {
            return None;
        }
    }
    let exp = exp - frac.len() as i32;
    if !(-22..=22).contains(&exp) {
        return None;
    }
    let mut pow = 1.0f64;
    for _ in 0..exp.unsigned_abs() {
        pow *= 10.0;
    }
    let f = if exp < 0 { m as f64 / pow } else { m as f64 * pow };
    Some(if negative { -f } else { f })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's value as ours, node by node.
    fn from_theirs(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Value::from(u),
                (None, Some(i)) => Value::from(i),
                _ => Value::Number(Number::from_f64(n.as_f64().unwrap()).unwrap()),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_theirs).collect()),
            serde_json::Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, from_theirs(v))).collect()),
        }
    }

    /// Reads like serde_json (with `float_roundtrip`): the same value, or an error from both.
    fn same(text: &str) {
        let ours = parse(text);
        let theirs = serde_json::from_str::<serde_json::Value>(text).map(from_theirs);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                // `==` on numbers compares -0.0 and 0.0 alike; `Debug` shows the sign.
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{text}: ours {ours:?}, serde_json {theirs:?}"),
        }
    }

    #[test]
    fn a_large_object_keeps_every_key_and_the_last_of_a_repeated_one() {
        let n = 50_000;
        let mut text = String::from("{");
        for i in (0..n).rev() {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"k7\":\"last\"}");
        let v = parse(&text).unwrap();
        let map = v.as_object().unwrap();
        assert_eq!(map.len(), n);
        assert_eq!(v["k7"], Value::from("last"));
        assert_eq!(v["k49999"], Value::from(49_999));
        let keys: Vec<&String> = map.keys().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys in sorted order");
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a": [1, -2, 3.5, "x\"y\\z\/\b\f\n\r\t\u00e9\ud83d\ude00", true, false, null], "b": {}}"#,
            " [ ] ",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e-400",
            "0.30000000000000004",
            "19.990000000000002",
            "1E5",
            "1e+5",
            "2.5e-3",
            "123456789012345678901234567890",
            r#"{"k": 1, "k": 2}"#,
            "\"é😀\"",
        ] {
            same(text);
            assert!(parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "",
            " ",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "NaN",
            "1e400",
            "-1e400",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"a\u{1}b\"",
            "[1] 2",
            "{\"a\":[}",
        ] {
            same(text);
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(parse("[1,\n  x]").unwrap_err(), "expected a value at line 2 column 3");
        assert_eq!(parse("{\"a\": 1").unwrap_err(), "expected `,` or `}` at line 1 column 8");
        assert_eq!(parse("1e999").unwrap_err(), "number out of range at line 1 column 6");
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(parse(&deep(MAX_DEPTH as usize)).is_ok());
        assert_eq!(parse(&deep(MAX_DEPTH as usize + 1)).unwrap_err(), "nested more than 128 deep at line 1 column 129");
        // Another limit, with levels of the text's own that do not count (putMany's `[[id, data]]`).
        assert!(parse_nested(&deep(12), 10, 2).is_ok());
        assert_eq!(parse_nested(&deep(13), 10, 2).unwrap_err(), "nested more than 10 deep at line 1 column 13");
        // Far deeper than the stack could take if it were not limited.
        assert!(parse(&deep(1_000_000)).is_err());
        let objects = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        assert!(parse(&objects).is_err());
    }

    /// Floats read exactly: the fast path and the fallback against `core`'s parser, over random
    /// bit patterns written the shortest way, with 17 digits, and in short decimal forms.
    #[test]
    fn floats_are_exact() {
        let mut x = 0x243f_6a88_85a3_08d3u64;
        let mut fast = 0;
        for i in 0..150_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = match i % 3 {
                0 => f64::from_bits(x),
                1 => (x % 10_000_000) as f64 / 10f64.powi((x >> 40) as i32 % 12),
                _ => (x >> 11) as f64 / (1u64 << 53) as f64 * 1e6,
            };
            if !f.is_finite() {
                continue;
            }
            for text in [format!("{f:?}"), format!("{f:e}"), format!("{f:.17e}"), format!("{f:.3}")] {
                let want: f64 = text.parse().unwrap();
                let got = float_from(&text);
                assert_eq!(got.to_bits(), want.to_bits(), "{text}");
                if let Some(g) = fast_float(&text) {
                    fast += 1;
                    assert_eq!(g.to_bits(), want.to_bits(), "fast path: {text}");
                }
            }
        }
        assert!(fast > 50_000, "the fast path took only {fast} values");
    }
}

//! Any `Serialize` value -> compact JSON text: the records tidesync stores, the bodies it sends,
//! the results and events it hands to JS.
//!
//! Own code rather than serde_json's serializer, for size: one small writer (numbers through
//! `core`'s formatter, which the checksum needs anyway) instead of serde_json's with its own
//! integer and float formatters. The text is what `JSON.stringify` would write for the same
//! values: non-integers in their shortest round-trip spelling (`0.1`, `1.5e-7`, `1e+21`), a float
//! with an integral value as an integer (`2.0` is `2`, as in JS), NaN and infinities as `null`.
//! In the browser the browser spells non-integers itself (`Number.prototype.toString`); natively
//! `core`'s formatter does, and where two spellings of the shortest length are equally near the
//! double the two may pick differently (both read back as the same double). The checksum does not
//! depend on this text (`core::checksum`).
//! Map keys must be strings (numbers are written as strings, as serde_json does).

use std::fmt::{self, Display, Write as _};

use serde::ser::{self, Serialize};

/// `v` as compact JSON text. Fails only for a map whose keys are neither strings nor numbers.
pub fn to_string<T: Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    let mut out = String::with_capacity(128);
    append(v, &mut out)?;
    Ok(out)
}

/// Appends `v` as JSON text to `out` (on an error, `out` may hold part of it).
pub fn append<T: Serialize + ?Sized>(v: &T, out: &mut String) -> Result<(), Error> {
    let mut w = Writer { out: std::mem::take(out) };
    let r = v.serialize(&mut w);
    *out = w.out;
    r
}

/// Why a value could not be written as JSON.
#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Two strings as a JSON array, `["a","b"]`.
pub fn write_pair(a: &str, b: &str, out: &mut String) {
    out.push('[');
    write_string(a, out);
    out.push(',');
    write_string(b, out);
    out.push(']');
}

/// A JSON string literal: `"`, `\` and control characters escaped (as `JSON.stringify` does).
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `i` is on a character boundary.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A float as `JSON.stringify` spells it (`Number.prototype.toString`): the shortest digits
/// that read back as the same double, in decimal notation from 1e-6 up to 1e21, else with an
/// exponent (`1e+21`, `1.5e-7`). Not finite: `null`.
pub fn write_f64(f: f64, out: &mut String) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f.fract() == 0.0 && f.abs() < 9.0e15 {
        // A whole number (and -0) is an integer's digits: no float formatting needed.
        let _ = write!(out, "{}", f as i64);
    } else {
        spell_f64(f, out);
    }
}

/// In the browser the engine's own `Number.prototype.toString` spells it: the wasm carries no
/// float-formatting code (about 9 KB before compression), as it carries no float parser.
#[cfg(target_arch = "wasm32")]
fn spell_f64(f: f64, out: &mut String) {
    out.push_str(&crate::web::number_to_string(f));
}

#[cfg(not(target_arch = "wasm32"))]
fn spell_f64(f: f64, out: &mut String) {
    if f < 0.0 {
        out.push('-');
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // The decimal point goes after `n` digits.
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if n > 0 { '+' } else { '-' }, (n - 1).abs());
    }
}

/// The integer methods of a `Serializer`, all through `self.$number(&dyn Display)`.
macro_rules! integers {
    ($number:ident) => {
        integers!($number: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
            serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64));
    };
    ($number:ident: $($method:ident($t:ty)),*) => {$(
        fn $method(self, v: $t) -> Result<(), Error> {
            self.$number(&v)
        }
    )*};
}

struct Writer {
    out: String,
}

impl Writer {
    // Integers out of line: one call in each derived `serialize`, not a formatter set up inline.
    #[inline(never)]
    fn number(&mut self, n: &dyn Display) -> Result<(), Error> {
        let _ = write!(self.out, "{n}");
        Ok(())
    }

    /// Opens `{"variant":` around an enum variant's content.
    fn variant(&mut self, variant: &str) {
        self.out.push('{');
        write_string(variant, &mut self.out);
        self.out.push(':');
    }

    /// Opens an array (`[`) or object (`{`), inside `{"variant":` for an enum variant's.
    fn open(&mut self, variant: Option<&str>, bracket: char) -> Compound<'_> {
        if let Some(v) = variant {
            self.variant(v);
        }
        self.out.push(bracket);
        Compound { w: self, first: true, close_variant: variant.is_some() }
    }
}

/// An array or object being written; `first` until its first element.
struct Compound<'a> {
    w: &'a mut Writer,
    first: bool,
    /// Closes a `{"variant":` opened around it.
    close_variant: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !self.first {
            self.w.out.push(',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.comma();
        v.serialize(&mut *self.w)
    }

    /// A struct field's name: a Rust identifier or a `rename`, nothing to escape. One call per
    /// field in every derived `serialize`, so kept out of line.
    #[inline(never)]
    fn key(&mut self, k: &str) {
        self.comma();
        let out = &mut self.w.out;
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    }

    fn end(self, close: char) -> Result<(), Error> {
        self.w.out.push(close);
        if self.close_variant {
            self.w.out.push('}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Writer {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    integers!(number);

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        write_f64(v, &mut self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(v, &mut self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        ser::Serializer::collect_seq(self, v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.variant(variant);
        v.serialize(&mut *self)?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open(None, '['))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(self.open(Some(variant), '['))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open(None, '{'))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(self.open(Some(variant), '{'))
    }
}

// The array-like compounds: elements, then `]`.
macro_rules! array_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.element(v)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self, ']')
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Error> {
        self.comma();
        k.serialize(KeyWriter(&mut self.w.out))?;
        self.w.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, '}')
    }
}

// The struct-like compounds: named fields, then `}`.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result<(), Error> {
                self.key(k);
                v.serialize(&mut *self.w)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self, '}')
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// A map key: a string, or a number or unit variant written as one.
struct KeyWriter<'a>(&'a mut String);

impl KeyWriter<'_> {
    fn number(self, n: &dyn Display) -> Result<(), Error> {
        let _ = write!(self.0, "\"{n}\"");
        Ok(())
    }
}

fn key_error() -> Error {
    Error("a map key must be a string".into())
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    integers!(number);

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(v, self.0);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::core::sorted::VecMap;

    /// Same text as serde_json, apart from the float spelling (checked below).
    #[test]
    fn writes_what_serde_json_writes() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct S<'a> {
            a_b: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            list: Vec<i64>,
            t: (u8, &'a str),
            unit: (),
            e: Vec<E>,
            map: VecMap<u32, bool>,
            c: char,
        }
        #[derive(Serialize)]
        enum E {
            A,
            B(u8),
            C(u8, u8),
            D { x: u8 },
        }
        #[derive(Serialize)]
        #[serde(tag = "type")]
        enum Tagged {
            One { n: u8 },
        }
        let s = S {
            a_b: None,
            skipped: None,
            list: vec![i64::MIN, -1, 0, i64::MAX],
            t: (255, "q\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀/"),
            unit: (),
            e: vec![E::A, E::B(1), E::C(1, 2), E::D { x: 3 }],
            map: VecMap::from([(2, true), (10, false)]),
            c: '\u{7f}',
        };
        assert_eq!(to_string(&s).unwrap(), serde_json::to_string(&s).unwrap());
        assert_eq!(to_string(&Tagged::One { n: 1 }).unwrap(), r#"{"type":"One","n":1}"#);
        let v = json!({"k": [null, true, false, u64::MAX, -5, "s", {}, [], {"z": {"y": []}}], "": 1});
        assert_eq!(to_string(&v).unwrap(), serde_json::to_string(&v).unwrap());
        let bad: VecMap<(u8, u8), u8> = VecMap::from([((1, 2), 3)]);
        assert_eq!(to_string(&bad).unwrap_err().to_string(), "a map key must be a string");
    }

    /// Floats as `JSON.stringify` writes them (the expected texts are V8's), and exactly: every
    /// spelling reads back as the same double.
    #[test]
    fn floats_as_javascript_writes_them() {
        for (f, js) in [
            (0.1, "0.1"),
            (-0.0, "0"),
            (2.0, "2"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1.5e-7, "1.5e-7"),
            (1e-7, "1e-7"),
            (1.5e-6, "0.0000015"),
            (0.000001, "0.000001"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.7976931348623157e300, "1.7976931348623156e+300"),
            // An exact tie in the 17th digit (the double is ...333.25): V8 writes ...333.2; the
            // native formatter rounds the tie up. Both read back as the same double.
            (-1052730259603333.3, "-1052730259603333.3"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ] {
            let mut out = String::new();
            write_f64(f, &mut out);
            assert_eq!(out, js, "{f:e}");
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let mut out = String::new();
            write_f64(f, &mut out);
            let back: f64 = out.parse().unwrap();
            assert_eq!(back.to_bits(), if f == 0.0 { 0 } else { f.to_bits() }, "{out}");
            let v = crate::core::json::parse(&out).unwrap();
            assert_eq!(v.as_f64(), Some(back), "{out}");
        }
    }
}

//! Fuzzing the response parsers: every decoder of server answers (batch, pull, REST) gets
//! hundreds of thousands of generated bodies — mutations of valid responses, random JSON of the
//! wrong shapes, random bytes — and must return an outcome or a typed error, never panic.
//! `TIDESYNC_FUZZ_CASES` sets the count (default 100,000 per decoder).

use tidesync::core::op::{OpKind, Operation, Priority};
use tidesync::core::traits::Outcome;
use tidesync::core::value::Value;
use tidesync::json;
use tidesync::net::batch::decode_response;
use tidesync::net::pull::decode_pull;
use tidesync::net::rest::{decode, decode_check, decode_fetched, CollectionWire, Wire};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn cases() -> u64 {
    std::env::var("TIDESYNC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn random_value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(r.below(2) == 0),
        2 => json!(r.next() as i64),
        3 => json!((r.next() as f64) / 1e3 - 9e15),
        4 => json!(
            ["", "x", "operationId", "version", "-1", "1e400", "\u{0}", "2024-01-15T10:30:00Z"][r.below(8) as usize]
        ),
        5 => json!(r.below(5)),
        6 => Value::Array((0..r.below(4)).map(|_| random_value(r, depth + 1)).collect()),
        _ => {
            let keys = [
                "results",
                "operationId",
                "success",
                "data",
                "version",
                "conflict",
                "serverData",
                "serverVersion",
                "type",
                "items",
                "cursor",
                "hasMore",
                "entityId",
                "deleted",
                "id",
                "error",
                "status",
                "serverTime",
                "updatedAt",
            ];
            Value::Object(
                (0..r.below(6))
                    .map(|_| (keys[r.below(keys.len() as u64) as usize].to_string(), random_value(r, depth + 1)))
                    .collect(),
            )
        }
    }
}

/// Valid-looking responses, then mutated: fields swapped for random values, bytes flipped,
/// truncated.
fn body(r: &mut Rng) -> String {
    let valid = [
        json!({"success": true, "results": [{"operationId": "op", "success": true, "data": {"version": 2, "data": {"t": 1}}}], "serverTime": "2024-01-15T10:30:00Z"}),
        json!({"success": false, "results": [{"operationId": "op", "success": false, "status": 409, "conflict": {"type": "version", "serverVersion": 3, "serverData": {"t": 2}}}]}),
        json!({"items": [{"entityId": "a", "version": 1, "data": {"x": 1}, "deleted": false}], "cursor": 5, "hasMore": true}),
        json!([{"id": 1, "title": "x", "version": 2}]),
        json!({"success": false, "error": "Version conflict", "conflict": {"type": "version", "serverVersion": 5, "serverData": {"t": 9}}}),
    ];
    let mut v = valid[r.below(valid.len() as u64) as usize].clone();
    let text = match r.below(4) {
        0 => random_value(r, 0).to_string(),
        1 => {
            mutate(&mut v, r);
            v.to_string()
        }
        2 => (0..r.below(64)).map(|_| char::from_u32(r.below(0x80) as u32).unwrap_or('?')).collect(),
        _ => v.to_string(),
    };
    let mut bytes = text.into_bytes();
    match r.below(4) {
        0 if !bytes.is_empty() => bytes.truncate(r.below(bytes.len() as u64) as usize),
        1 if !bytes.is_empty() => {
            let i = r.below(bytes.len() as u64) as usize;
            bytes[i] = b"{}[]\",:0-e.n\\"[r.below(13) as usize];
        }
        _ => {}
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutate(v: &mut Value, r: &mut Rng) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(r.below(m.len() as u64) as usize).cloned().unwrap_or_default();
            if r.below(3) == 0 {
                m.insert(k, random_value(r, 2));
            } else if let Some(child) = m.get_mut(&k) {
                mutate(child, r);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = r.below(a.len() as u64) as usize;
            mutate(&mut a[i], r);
        }
        other => *other = random_value(r, 2),
    }
}

fn op(kind: OpKind) -> Operation {
    Operation {
        id: "op".into(),
        seq: 1,
        collection: "c".into(),
        entity_id: "a".into(),
        kind,
        payload: Some(json!({"t": 1})),
        base_version: Some(1),
        priority: Priority::Medium,
        created_at: 0,
        attempts: 0,
        next_attempt_at: 0,
        last_error: None,
        last_status: None,
        checksum: String::new(),
        sent: true,
        patch: None,
    }
}

#[test]
fn decoders_never_panic_on_generated_bodies() {
    let mut r = Rng(0x7165_7379_6e63);
    let wire =
        CollectionWire { endpoint: "/c".into(), wire: Wire::Rest, pull_param: "since".into(), ..Default::default() };
    let keyed = CollectionWire {
        key: "cardId".into(),
        version: tidesync::net::rest::VersionSource::Field("data.version".into()),
        ..wire.clone()
    };
    let statuses = [200, 201, 204, 400, 401, 404, 409, 412, 429, 500, 503, 302, 0, 999];
    let (mut ok, mut protocol) = (0u64, 0u64);
    let n = cases();
    for _ in 0..n {
        let b = body(&mut r);
        let status = statuses[r.below(statuses.len() as u64) as usize];
        match decode_response(status, &b, Some("Sun, 06 Nov 1994 08:49:37 GMT"), 0) {
            Ok(_) => ok += 1,
            Err(f) => {
                if f.error.code() == "PROTOCOL" {
                    protocol += 1;
                }
                assert!(["PROTOCOL", "HTTP"].contains(&f.error.code()), "{:?}", f.error);
            }
        }
        let _ = decode_pull(&wire, status, &b, Some("3"), 0);
        let _ = decode_pull(&keyed, status, &b, Some("3"), 0);
        for kind in [OpKind::Create, OpKind::Update, OpKind::Delete] {
            if let Ok(Outcome::Failed(f)) = decode(&op(kind), &wire, status, &b, Some("W/\"7\""), Some("x"), 0) {
                assert!(["PROTOCOL", "HTTP"].contains(&f.error.code()), "{:?}", f.error);
            }
        }
        let _ = decode_fetched(&wire, status, &b, None);
        let _ = decode_check(&op(OpKind::Update), &keyed, status, &b, Some("\"2\""));
    }
    println!("fuzzed {n} bodies x 7 decoders: batch decoded {ok}, rejected as PROTOCOL {protocol}");
    // The generator must reach both sides, or it is not exercising the decoders.
    assert!(ok > n / 100 && protocol > n / 10, "ok {ok}, protocol {protocol}");
}

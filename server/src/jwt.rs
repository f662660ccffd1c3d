//! HS256 JSON Web Tokens, and nothing else: the header must say `"alg": "HS256"`, the signature is
//! checked in constant time before the claims are read, and `sub` and `exp` are required.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longer tokens are refused before any decoding (ours are about 200 bytes).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Shortest secret accepted: HS256 wants at least the hash's 32 bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
}

/// Why a token was refused; the text goes into the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    TooLong,
    Malformed,
    Algorithm,
    Signature,
    Claims,
    Expired,
    NotYetValid,
}

impl Invalid {
    pub fn message(self) -> &'static str {
        match self {
            Self::TooLong => "token too long",
            Self::Malformed => "malformed token",
            Self::Algorithm => "token algorithm must be HS256",
            Self::Signature => "bad token signature",
            Self::Claims => "token needs a string sub and an integer exp",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not valid yet",
        }
    }
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Signs `{"sub", "iat", "exp"}` with `secret`.
pub fn mint(secret: &[u8], sub: &str, iat: i64, exp: i64) -> String {
    let header = encode_json(&json!({"alg": "HS256", "typ": "JWT"}));
    let claims = encode_json(&json!({"sub": sub, "iat": iat, "exp": exp}));
    let signing_input = format!("{header}.{claims}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn decode_object(part: &str) -> Result<Map<String, Value>, Invalid> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| Invalid::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Invalid::Malformed),
    }
}

/// Checks `token` against `secret` at unix time `now` (seconds) and returns its claims.
pub fn verify(secret: &[u8], token: &str, now: i64) -> Result<Claims, Invalid> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::TooLong);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Invalid::Malformed)?;
    let (header, claims) = signing_input.split_once('.').ok_or(Invalid::Malformed)?;
    if claims.contains('.') {
        return Err(Invalid::Malformed);
    }
    let header = decode_object(header)?;
    // Exactly HS256: `none`, other HMACs and public-key algorithms are all refused here, before
    // the signature is looked at, so no header can choose how it is checked.
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(Invalid::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Invalid::Malformed)?;
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    // `verify_slice` compares in constant time.
    m.verify_slice(&signature).map_err(|_| Invalid::Signature)?;
    read_claims(&decode_object(claims)?, now)
}

fn read_claims(claims: &Map<String, Value>, now: i64) -> Result<Claims, Invalid> {
    let sub = claims.get("sub").and_then(Value::as_str).filter(|s| crate::valid_name(s));
    let exp = claims.get("exp").and_then(Value::as_i64);
    let (Some(sub), Some(exp)) = (sub, exp) else {
        return Err(Invalid::Claims);
    };
    if exp <= now {
        return Err(Invalid::Expired);
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if nbf <= now => {}
            Some(_) => return Err(Invalid::NotYetValid),
            None => return Err(Invalid::Claims),
        },
    }
    Ok(Claims { sub: sub.to_owned(), exp })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn forge(header: &Value, claims: &Value, signature: &str) -> String {
        format!("{}.{}.{signature}", encode_json(header), encode_json(claims))
    }

    #[test]
    fn a_minted_token_verifies_and_carries_its_claims() {
        let token = mint(SECRET, "alice", 100, 200);
        assert_eq!(verify(SECRET, &token, 150), Ok(Claims { sub: "alice".into(), exp: 200 }));
        assert_eq!(verify(SECRET, &token, 200), Err(Invalid::Expired));
        assert_eq!(verify(b"another secret, also 32 bytes...", &token, 150), Err(Invalid::Signature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let claims = json!({"sub": "alice", "exp": 9_999_999_999i64});
        for alg in [json!("none"), json!("HS512"), json!("RS256"), json!("hs256"), Value::Null] {
            let token = forge(&json!({"alg": alg, "typ": "JWT"}), &claims, "");
            assert_eq!(verify(SECRET, &token, 0), Err(Invalid::Algorithm), "{alg}");
        }
    }

    #[test]
    fn tampered_malformed_and_claimless_tokens_are_refused() {
        let token = mint(SECRET, "alice", 0, 9_999_999_999);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let as_bob = format!("{head}.{}.{signature}", encode_json(&json!({"sub": "bob", "exp": 9_999_999_999i64})));
        assert_eq!(verify(SECRET, &as_bob, 0), Err(Invalid::Signature));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &format!("{token}x"), &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(verify(SECRET, bad, 0).is_err(), "{bad}");
        }
        for claims in
            [json!({"exp": 10}), json!({"sub": "a"}), json!({"sub": "", "exp": 10}), json!({"sub": 5, "exp": 10})]
        {
            let header = encode_json(&json!({"alg": "HS256"}));
            let body = encode_json(&claims);
            let mut m = mac(SECRET);
            m.update(format!("{header}.{body}").as_bytes());
            let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
            assert_eq!(verify(SECRET, &format!("{header}.{body}.{signature}"), 0), Err(Invalid::Claims), "{claims}");
        }
    }
}

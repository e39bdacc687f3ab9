//! Cross-site request protection for the console's forms.
//!
//! The browser sends Basic credentials by itself, so a page on another site
//! could post a form to the console with the user's credentials. Two checks
//! stop that, both required on every mutating request:
//!
//! - the request comes from our own pages: `Sec-Fetch-Site` (when the browser
//!   sends it) is `same-origin` or `none`, and `Origin` (when sent) names the
//!   host the request went to;
//! - the form carries a token only our pages hold: an HMAC-SHA256, under a key
//!   drawn at startup, of its expiry and the digest of the credentials the
//!   page was served to. Another site cannot read our pages, so it cannot
//!   learn a token; a token served to one user is no good for another.

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a served form stays valid.
const TOKEN_LIFETIME_S: i64 = 12 * 3600;

/// Issues and checks form tokens.
pub struct Csrf {
    key: [u8; 32],
}

impl Csrf {
    /// With a fresh random key (tokens die with the process).
    pub fn new() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self { key })
    }

    #[cfg(test)]
    fn with_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, expires: i64, identity: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"mlops-alert-router console form\0");
        mac.update(&expires.to_be_bytes());
        mac.update(&Sha256::digest(identity));
        mac
    }

    /// A token for a form served now (Unix seconds) to `identity` (the
    /// request's `Authorization` header, empty when auth is open).
    pub fn token(&self, identity: &[u8], now_s: i64) -> String {
        let expires = now_s + TOKEN_LIFETIME_S;
        let tag = self.mac(expires, identity).finalize().into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Is `token` one we issued to `identity`, not expired? (Constant-time.)
    pub fn verify(&self, token: &str, identity: &[u8], now_s: i64) -> bool {
        let Some((expires, tag)) = token.split_once('.') else {
            return false;
        };
        let (Ok(expires), Ok(tag)) = (expires.parse::<i64>(), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        if expires < now_s || expires > now_s + TOKEN_LIFETIME_S {
            return false;
        }
        self.mac(expires, identity).verify_slice(&tag).is_ok()
    }
}

/// Refuses a request a browser says came from another site. Requests without
/// `Origin` and `Sec-Fetch-Site` (curl, scripts) pass: the token still applies.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {:?})",
                super::clip(site)
            ));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_authority = url::Url::parse(origin).ok().and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
        if host.is_empty() || origin_authority.as_deref() != Some(host) {
            return Err(format!(
                "cross-site request refused (Origin {:?} is not this host)",
                super::clip(origin)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_token_is_good_for_its_identity_until_it_expires() {
        let csrf = Csrf::with_key([7; 32]);
        let t = csrf.token(b"Basic abc", 1_000);
        assert!(csrf.verify(&t, b"Basic abc", 1_000));
        assert!(csrf.verify(&t, b"Basic abc", 1_000 + TOKEN_LIFETIME_S));
        assert!(!csrf.verify(&t, b"Basic abc", 1_001 + TOKEN_LIFETIME_S));
        assert!(!csrf.verify(&t, b"Basic abd", 1_000), "other identity");
        assert!(
            !Csrf::with_key([8; 32]).verify(&t, b"Basic abc", 1_000),
            "other key"
        );
    }

    #[test]
    fn forged_or_mangled_tokens_are_refused() {
        let csrf = Csrf::with_key([7; 32]);
        let t = csrf.token(b"", 1_000);
        let (exp, tag) = t.split_once('.').unwrap();
        // A later expiry with the old tag.
        let later = format!("{}.{tag}", exp.parse::<i64>().unwrap() + 1);
        for bad in ["", ".", "x.y", exp, &later, &format!("{exp}.{}", &tag[1..])] {
            assert!(!csrf.verify(bad, b"", 1_000), "{bad:?} accepted");
        }
        // An expiry far in the future is refused even with a valid tag shape.
        let far = csrf.token(b"", 1_000 + 10 * TOKEN_LIFETIME_S);
        assert!(!csrf.verify(&far, b"", 1_000));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_same_origin_browser_requests_pass() {
        assert!(same_origin(&headers(&[])).is_ok());
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9095"),
            ("origin", "http://127.0.0.1:9095"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
        assert!(same_origin(&headers(&[
            ("host", "router.example"),
            ("origin", "https://router.example")
        ]))
        .is_ok());
        for bad in [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:9095"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:9095"),
                ("origin", "http://127.0.0.1:9096"),
            ]),
            headers(&[("host", "127.0.0.1:9095"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:9095")]),
        ] {
            assert!(same_origin(&bad).is_err(), "{bad:?} passed");
        }
    }
}

//! The one outbound HTTP transport: every request the router makes to a chat
//! platform, a webhook, Grafana, Prometheus or Alertmanager goes through
//! [`Transport::send`].
//!
//! What it guarantees, for every destination:
//!
//! - a connect timeout and a total timeout (connect, headers and body);
//! - no redirects: a 3xx is a failure naming the status, never followed (it
//!   would carry a secret URL's request elsewhere);
//! - every response body is read as a stream with a cap: a success body up to
//!   the caller's limit (over it the request fails, naming the limit, and
//!   nothing more is read); an error body up to [`ERROR_BODY_READ`] bytes, of
//!   which [`ERROR_BODY_KEEP`] characters are kept;
//! - `Retry-After` read as seconds or an HTTP date, never more than
//!   [`MAX_RETRY_AFTER`] (the pipeline caps it further by the action's
//!   backoff and `max_age`);
//! - every error names the destination (scheme, host, port, path; never the
//!   query or user info) and the cause (connection refused, DNS, TLS,
//!   timeout, status, body over the limit), and is scrubbed of secrets by one
//!   [`Scrubber`] before anything is cut;
//! - one CA policy ([`CaPolicy`], `tls.*`): the system's root certificates
//!   (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus the
//!   certificates of `tls.ca_file`, if set.

use crate::secret::REDACTED;
use base64::Engine;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// `tls.*`: what every outbound HTTPS client trusts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of CA certificates (one or several) trusted in addition to
    /// the system's roots, by every outbound client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The CA policy of every outbound client: the system's root certificates
/// (reqwest with rustls native roots) plus the certificates of `tls.ca_file`.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct CaPolicy {
    extra: Arc<Vec<reqwest::Certificate>>,
    source: Option<PathBuf>,
}

impl fmt::Debug for CaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPolicy")
            .field("ca_file", &self.source)
            .field("extra_certificates", &self.extra.len())
            .finish()
    }
}

impl CaPolicy {
    /// From `tls.*`: reads and checks `tls.ca_file`; the error names the key
    /// and the file.
    pub fn load(settings: &TlsSettings) -> Result<Self, String> {
        match &settings.ca_file {
            None => Ok(Self::default()),
            Some(path) => Ok(Self {
                extra: Arc::new(read_ca_file(path, "tls.ca_file")?),
                source: Some(path.clone()),
            }),
        }
    }

    /// A client builder trusting the system roots and the extra CAs.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        add_roots(reqwest::Client::builder(), &self.extra)
    }

    /// How many certificates `tls.ca_file` added.
    pub fn extra_certificates(&self) -> usize {
        self.extra.len()
    }
}

/// Adds `certs` to the roots `builder` trusts.
pub fn add_roots(
    mut builder: reqwest::ClientBuilder,
    certs: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    for cert in certs {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder
}

/// The CA certificates of a PEM file (one or several); an unreadable file, a
/// file without a certificate or a certificate rustls refuses is an error
/// naming `key` and the file.
pub fn read_ca_file(path: &Path, key: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let fail = |what: String| format!("{key}: {}: {what}", path.display());
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail(format!("not a PEM CA bundle: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate (want PEM blocks `-----BEGIN CERTIFICATE-----`)".to_owned(),
        ));
    }
    // rustls parses the certificates when the client is built: build one
    // now so that a bad certificate is a configuration error, not a failure
    // of every later request.
    add_roots(reqwest::Client::builder(), &certs)
        .build()
        .map_err(|e| fail(format!("not usable as a CA certificate: {e}")))?;
    Ok(certs)
}

/// Bytes of an error answer read (the rest is never read).
pub const ERROR_BODY_READ: usize = 8 * 1024;
/// Characters of an error answer kept in an error message, after scrubbing.
pub const ERROR_BODY_KEEP: usize = 2 * 1024;
/// Longest wait taken from a `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Shortest string treated as a secret: shorter ones would blank ordinary words.
const MIN_SECRET: usize = 4;

// ------------------------------------------------------------------ scrubbing

/// Secrets and the encodings a destination may echo them in; replaces each
/// occurrence with `<redacted>`.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first.
    forms: Vec<String>,
}

/// Characters a URL component keeps unencoded (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool, upper: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// `s` as inside a JSON string, without the quotes.
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A path segment or query value that looks like a token rather than a word:
/// long, or with a digit.
fn looks_like_token(s: &str) -> bool {
    s.len() >= 16 || (s.len() >= 8 && s.bytes().any(|b| b.is_ascii_digit()))
}

impl Scrubber {
    /// An empty scrubber.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `secret` in every form a destination may echo: raw, percent-encoded
    /// (all non-alphanumerics or only reserved characters, either hex case,
    /// form encoding), JSON-escaped (also with `\/`), HTML `&amp;`.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET {
            return;
        }
        let mut bases = vec![secret.to_owned()];
        for upper in [true, false] {
            bases.push(percent_encode(secret, |b| b.is_ascii_alphanumeric(), upper));
            bases.push(percent_encode(secret, unreserved, upper));
        }
        bases.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        let mut forms = Vec::new();
        for base in bases {
            let json = json_escaped(&base);
            forms.push(json.replace('/', "\\/"));
            forms.push(json);
            forms.push(base.replace('&', "&amp;"));
            forms.push(base);
        }
        for form in forms {
            if form.len() >= MIN_SECRET && !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        self.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds basic-auth credentials: the password, `user:password` and its base64.
    pub fn add_basic(&mut self, user: &str, password: &str) {
        self.add(password);
        let pair = format!("{user}:{password}");
        self.add(&pair);
        let engine = &base64::engine::general_purpose::STANDARD;
        self.add(&engine.encode(&pair));
        self.add(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(&pair));
    }

    /// Adds a secret URL: the URL as written and as normalised, its path,
    /// query and fragment, every query value and token-like path segment, and
    /// its user info.
    pub fn add_url(&mut self, url: &str) {
        self.add(url);
        let Ok(u) = Url::parse(url.trim()) else {
            return;
        };
        self.add(u.as_str());
        if u.path().len() > 1 {
            self.add(u.path());
            self.add(u.path().trim_start_matches('/'));
        }
        if let Some(q) = u.query() {
            self.add(q);
        }
        if let Some(f) = u.fragment() {
            self.add(f);
        }
        self.add_url_credentials(&u);
        for segment in u.path_segments().into_iter().flatten() {
            if looks_like_token(segment) {
                self.add(segment);
                if let Ok(decoded) = percent_decode(segment) {
                    self.add(&decoded);
                }
            }
        }
    }

    /// Adds the parts of a URL that are credentials even when the URL is not
    /// a secret (a Prometheus URL): user info and query values.
    pub fn add_url_credentials(&mut self, u: &Url) {
        if let Some(password) = u.password() {
            let user = percent_decode(u.username()).unwrap_or_default();
            let password = percent_decode(password).unwrap_or_else(|_| password.to_owned());
            self.add_basic(&user, &password);
            self.add(&format!(
                "{}:{}",
                u.username(),
                u.password().unwrap_or_default()
            ));
        }
        for (_, value) in u.query_pairs() {
            self.add(&value);
        }
        if let Some(q) = u.query() {
            for pair in q.split('&') {
                if let Some((_, raw)) = pair.split_once('=') {
                    self.add(raw);
                }
            }
        }
    }

    /// True when there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every form of every secret replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }

    /// `text` (which was cut off after its end when `cut`) scrubbed, then
    /// clipped to `max_chars` at a character boundary. Scrubbing comes first,
    /// so a clip can only cut a `<redacted>`, never a secret; a text that was
    /// cut also loses any tail that could be the start of a secret.
    pub fn scrub_clip(&self, text: &str, max_chars: usize, cut: bool) -> String {
        let mut out = self.scrub(text);
        if cut {
            let strip = self.partial_tail(&out);
            out.truncate(out.len() - strip);
            out.push('…');
        }
        crate::text::clip(&out, max_chars)
    }

    /// Length of the longest tail of `text` that is a proper prefix of a secret form.
    fn partial_tail(&self, text: &str) -> usize {
        let mut longest = 0;
        for form in &self.forms {
            let max = (form.len() - 1).min(text.len());
            for n in (longest + 1..=max).rev() {
                if text.is_char_boundary(text.len() - n)
                    && form.is_char_boundary(n)
                    && text.as_bytes()[text.len() - n..] == form.as_bytes()[..n]
                {
                    longest = n;
                    break;
                }
            }
        }
        longest
    }
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes)
}

// ------------------------------------------------------------------ errors

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The request could not be built (a bad header, URL): permanent.
    Request,
    /// No complete answer within the timeout.
    Timeout,
    /// No connection (refused, DNS, TLS).
    Connect,
    /// The connection broke while sending or reading.
    Network,
    /// A 3xx, not followed.
    Redirect(u16),
    /// A non-2xx, non-3xx answer.
    Status(u16),
    /// A success answer over the caller's limit: the request was delivered.
    TooLarge,
    /// A success status whose body then broke off or timed out: the request
    /// was delivered.
    Incomplete(u16),
}

/// A failed request. `message` names the destination and the cause, and is
/// already scrubbed of every secret the transport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundError {
    pub kind: Kind,
    pub message: String,
    /// From a 429/5xx answer's `Retry-After`, at most [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    /// The start of an error answer's body, scrubbed.
    pub body: String,
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OutboundError {}

impl OutboundError {
    /// Worth trying again later: timeouts, network errors, 429 and 5xx.
    pub fn retryable(&self) -> bool {
        match self.kind {
            Kind::Timeout | Kind::Connect | Kind::Network => true,
            Kind::Status(s) => s == 429 || s >= 500,
            Kind::Request | Kind::Redirect(_) | Kind::TooLarge | Kind::Incomplete(_) => false,
        }
    }
}

/// `n` bytes, for an error message: "64 KiB", "8 MiB", "1000 bytes".
pub fn format_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

// ------------------------------------------------------------------ transport

/// How a [`Transport`] talks to its destination.
#[derive(Debug, Clone)]
pub struct Options {
    /// Total: connecting, sending, headers and the whole body.
    pub timeout: Duration,
    /// Connecting (TCP and TLS).
    pub connect_timeout: Duration,
    /// Most bytes of a success body.
    pub max_body: usize,
    /// The setting that sets `max_body`, named when it is exceeded.
    pub max_body_setting: Option<String>,
}

impl Options {
    /// `timeout` total, connecting within `timeout` but at most 5 s, success bodies up to `max_body`.
    pub fn new(timeout: Duration, max_body: usize) -> Self {
        Self {
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(5)),
            max_body,
            max_body_setting: None,
        }
    }

    /// Names the setting of `max_body` in the error when it is exceeded.
    pub fn setting(mut self, key: &str) -> Self {
        self.max_body_setting = Some(key.to_owned());
        self
    }
}

/// A 2xx answer with its whole (capped) body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An HTTP client with the guarantees above, for one kind of destination.
pub struct Transport {
    client: reqwest::Client,
    options: Options,
    scrubber: Scrubber,
}

impl Transport {
    /// A transport trusting what `tls` trusts.
    pub fn new(tls: &CaPolicy, options: Options, scrubber: Scrubber) -> Result<Self, String> {
        Self::with_builder(tls.builder(), options, scrubber)
    }

    /// A transport from `builder` (from [`CaPolicy::builder`], e.g. with more
    /// CA certificates); the
    /// timeouts, the redirect policy and the user agent are set here.
    pub fn with_builder(
        builder: reqwest::ClientBuilder,
        options: Options,
        scrubber: Scrubber,
    ) -> Result<Self, String> {
        let client = builder
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mlops-alert-router/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            options,
            scrubber,
        })
    }

    /// The client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The secrets this transport scrubs.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// The total timeout.
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// "GET http://host:port/path": the destination without query or user info, scrubbed.
    pub fn describe(&self, method: &reqwest::Method, url: &Url) -> String {
        let mut base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            base.push_str(&format!(":{port}"));
        }
        let mut path = self.scrubber.scrub(url.path());
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        format!("{method} {base}{path}")
    }

    /// Builds and sends `request`; a 2xx answer with its capped body, else the error.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, OutboundError> {
        let request = request.build().map_err(|e| OutboundError {
            kind: Kind::Request,
            message: self.scrubber.scrub(&format!(
                "cannot build the request: {}",
                chain(&e.without_url())
            )),
            retry_after: None,
            body: String::new(),
        })?;
        let dest = self.describe(request.method(), request.url());
        let error = |kind: Kind, what: String| OutboundError {
            kind,
            message: self.scrubber.scrub(&format!("{what} ({dest})")),
            retry_after: None,
            body: String::new(),
        };
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.request_error(e, &dest))?;
        let status = response.status();
        let headers = response.headers().clone();
        let status_text = match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        };

        if status.is_redirection() {
            let location = headers
                .get(LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .map(|l| format!(" to {}", self.scrubber.scrub_clip(&l, 200, false)))
                .unwrap_or_default();
            return Err(error(
                Kind::Redirect(status.as_u16()),
                format!("{status_text}: a redirect{location}, not followed"),
            ));
        }

        if !status.is_success() {
            let (bytes, cut) = read_capped(&mut response, ERROR_BODY_READ).await;
            let text = utf8_prefix(&bytes, cut);
            let body = self
                .scrubber
                .scrub_clip(text.trim(), ERROR_BODY_KEEP, cut)
                .trim()
                .to_owned();
            let asked = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
            let retry_after = retry_after(&headers);
            let mut what = status_text;
            if let Some(asked) = asked {
                what.push_str(&format!(
                    " with Retry-After {}",
                    self.scrubber.scrub_clip(asked.trim(), 64, false)
                ));
            }
            let message = if body.is_empty() {
                format!("{what} ({dest})")
            } else {
                format!("{what} ({dest}): {body}")
            };
            return Err(OutboundError {
                kind: Kind::Status(status.as_u16()),
                message: self.scrubber.scrub(&message),
                retry_after,
                body,
            });
        }

        let cap = self.options.max_body;
        let limit = match &self.options.max_body_setting {
            Some(key) => format!("the {} limit ({key})", format_bytes(cap)),
            None => format!("the {} limit", format_bytes(cap)),
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(error(
                Kind::TooLarge,
                format!(
                    "{status_text} with a {} byte answer, over {limit}; not read",
                    declared.unwrap_or_default()
                ),
            ));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Err(error(
                            Kind::TooLarge,
                            format!("{status_text} with an answer over {limit}; stopped reading"),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let mut e = self.request_error(e, &dest);
                    e.kind = Kind::Incomplete(status.as_u16());
                    e.message = format!("{status_text}, then reading the answer: {}", e.message);
                    return Err(e);
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn request_error(&self, e: reqwest::Error, dest: &str) -> OutboundError {
        let e = e.without_url();
        let causes = chain(&e);
        let lower = causes.to_lowercase();
        let (kind, what) = if e.is_timeout() {
            (
                Kind::Timeout,
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.options.timeout)
                ),
            )
        } else if e.is_builder() {
            (Kind::Request, "cannot build the request".to_owned())
        } else if lower.contains("dns error") || lower.contains("failed to lookup") {
            (Kind::Connect, "DNS lookup failed".to_owned())
        } else if lower.contains("connection refused") {
            (Kind::Connect, "connection refused".to_owned())
        } else if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            // Past TCP, an https connection fails only in the TLS handshake.
            || (e.is_connect()
                && !lower.contains("tcp connect error")
                && dest.split_whitespace().nth(1).is_some_and(|u| u.starts_with("https://")))
        {
            (Kind::Connect, "TLS handshake failed".to_owned())
        } else if e.is_connect() {
            (Kind::Connect, "cannot connect".to_owned())
        } else if e.is_body() || e.is_decode() {
            (Kind::Network, "the answer broke off".to_owned())
        } else {
            (Kind::Network, "the request failed".to_owned())
        };
        // A timeout's causes add nothing ("operation timed out").
        let message = if kind == Kind::Timeout {
            format!("{what} ({dest})")
        } else {
            format!("{what} ({dest}): {causes}")
        };
        OutboundError {
            kind,
            message: self.scrubber.scrub(&message),
            retry_after: None,
            body: String::new(),
        }
    }
}

/// reqwest's Display is terse ("error sending request"): the error and its
/// causes, without the URL.
fn chain(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads at most `cap` bytes of `response`'s body; true when there was more
/// (or the read broke off). Never reads past the cap.
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - out.len();
                if chunk.len() > room {
                    out.extend_from_slice(&chunk[..room]);
                    return (out, true);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

/// The bytes as text; a cut body loses an incomplete last character.
fn utf8_prefix(bytes: &[u8], cut: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(e) if cut && e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `Retry-After`: seconds (possibly fractional) or an HTTP date; at most
/// [`MAX_RETRY_AFTER`], however large the value (10^30 s included).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, chrono::Utc::now())
}

/// `Retry-After`'s value as a wait from `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let wait = match value.parse::<f64>() {
        Ok(secs) if secs.is_nan() || secs < 0.0 => return None,
        Ok(secs) => Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_caps_absurd_values() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e30", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("inf", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let at = chrono::DateTime::parse_from_rfc2822("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                at - chrono::Duration::seconds(90)
            ),
            Some(Duration::from_secs(90))
        );
        // A date in the past: now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        // A date in the far future: capped.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    const HOOK: &str = "https://hooks.example/services/T0AB12CD3/B0XY98ZW7/Zq8vR2sPq1LmN4tUvW6xYz0A?token=abc123def&sig=s%2Fg%3D";

    fn hook_scrubber() -> Scrubber {
        let mut s = Scrubber::new();
        s.add_url(HOOK);
        s
    }

    #[test]
    fn every_echoed_form_of_a_url_is_scrubbed() {
        let s = hook_scrubber();
        let token = "Zq8vR2sPq1LmN4tUvW6xYz0A";
        let echoes = [
            HOOK.to_owned(),
            percent_encode(HOOK, |b| b.is_ascii_alphanumeric(), true),
            percent_encode(HOOK, unreserved, false),
            url::form_urlencoded::byte_serialize(HOOK.as_bytes()).collect(),
            json_escaped(HOOK).replace('/', "\\/"),
            format!("{{\"error\":\"no hook {}\"}}", HOOK.replace('/', "\\/")),
            "/services/T0AB12CD3/B0XY98ZW7/Zq8vR2sPq1LmN4tUvW6xYz0A".to_owned(),
            format!("invalid_token {token}"),
            "token=abc123def".to_owned(),
            "bad value abc123def".to_owned(),
            "sig=s%2Fg%3D".to_owned(),
            HOOK.replace('&', "&amp;"),
        ];
        for echo in echoes {
            let out = s.scrub(&format!("platform says: {echo} (end)"));
            for piece in [token, "abc123def", "T0AB12CD3", "B0XY98ZW7", "services/T0"] {
                assert!(!out.contains(piece), "{piece} in {out:?} (echo {echo:?})");
            }
            assert!(out.contains(REDACTED), "{out}");
            assert!(out.ends_with("(end)"), "{out}");
        }
        // Ordinary words survive.
        assert_eq!(s.scrub("no such services here"), "no such services here");
    }

    #[test]
    fn basic_credentials_and_their_base64_are_scrubbed() {
        let mut s = Scrubber::new();
        s.add_url_credentials(
            &Url::parse("http://prom:hunter2pw@prom.example:9090/?x_token=qwertyuiop").unwrap(),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("prom:hunter2pw");
        for echo in [
            "hunter2pw",
            &format!("Basic {b64}"),
            "prom:hunter2pw",
            "qwertyuiop",
        ] {
            let out = s.scrub(echo);
            assert!(
                !out.contains("hunter2pw") && !out.contains(&b64) && !out.contains("qwertyuiop"),
                "{out}"
            );
        }
    }

    #[test]
    fn a_cut_never_leaves_a_partial_secret() {
        let s = hook_scrubber();
        let token = "Zq8vR2sPq1LmN4tUvW6xYz0A";
        // The read stopped inside the token: its start must go too.
        for n in 1..token.len() {
            let text = format!("error for hook {}", &token[..n]);
            assert_eq!(s.scrub_clip(&text, 10_000, true), "error for hook …", "{n}");
        }
        // A whole secret near the clip edge is replaced before the clip.
        let text = format!("{}{token}{}", "x".repeat(190), "y".repeat(100));
        for max in 185..230 {
            let out = s.scrub_clip(&text, max, false);
            for n in 3..=token.len() {
                assert!(!out.contains(&token[..n]), "{max}: {out}");
            }
        }
        // Multi-byte text is cut at a character boundary.
        let out = s.scrub_clip(&"é".repeat(300), 100, true);
        assert_eq!(out.chars().count(), 100);
    }

    #[tokio::test]
    async fn errors_name_the_destination_and_the_cause() {
        let mut scrubber = Scrubber::new();
        scrubber.add("s3cr3t-token-value");
        let t = Transport::new(
            &CaPolicy::default(),
            Options::new(Duration::from_secs(5), 1024),
            scrubber,
        )
        .unwrap();
        // Nothing listens on a port just released.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/api/v1/query?token=s3cr3t-token-value");
        let e = t.send(t.client().get(&url)).await.unwrap_err();
        assert_eq!(e.kind, Kind::Connect);
        assert!(e.retryable());
        assert!(
            e.message.starts_with(&format!(
                "connection refused (GET http://127.0.0.1:{port}/api/v1/query): "
            )),
            "{}",
            e.message
        );
        assert!(e.message.contains("Connection refused"), "{}", e.message);
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);

        // TLS spoken to a plain-HTTP server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let e = t
            .send(t.client().get(format!("https://127.0.0.1:{port}/x")))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Connect, "{}", e.message);
        assert!(
            e.message.starts_with(&format!(
                "TLS handshake failed (GET https://127.0.0.1:{port}/x): "
            )),
            "{}",
            e.message
        );
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(format_bytes(64 * 1024), "64 KiB");
        assert_eq!(format_bytes(8 * 1024 * 1024), "8 MiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }
}

//! Delivery: one HTTP request, its answer classified, under a per-destination
//! rate limit.
//!
//! Only 2xx is success. 429 and 5xx, network errors and timeouts are
//! retryable (the pipeline schedules the retry, at least `Retry-After`
//! later); any other status is permanent. Errors never carry the URL or a
//! token: reqwest's are stripped of the URL and every message is scrubbed of
//! the action's secrets.

use super::RateLimit;
use crate::act::ActionError;
use crate::secret::REDACTED;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::num::NonZeroU32;
use std::time::Duration;
use url::Url;

/// Longest wait taken from a `Retry-After` (a day: anything longer is a bug upstream).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// governor's clock on tokio's time, so waiting for the limiter and tests
/// with a paused clock agree.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.start)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A rate-limited sender to one destination.
pub struct Delivery {
    client: reqwest::Client,
    limiter: Limiter,
    clock: TokioClock,
    timeout: Duration,
    /// Strings that must not appear in an error (URL, its path and query, tokens).
    secrets: Vec<String>,
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl RateLimit {
    /// The governor quota; `None` when out of range (validation reports it).
    pub fn quota(&self) -> Option<Quota> {
        if !(self.per_second.is_finite() && self.per_second > 0.0 && self.per_second <= 1e6) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

impl Delivery {
    /// A sender with this timeout per request and rate limit; `secrets` are scrubbed from errors.
    pub fn new(timeout: Duration, rate: RateLimit, secrets: Vec<String>) -> Result<Self, String> {
        let quota = rate.quota().ok_or_else(|| {
            "rate_limit: per_second must be in (0, 1e6] and burst at least 1".to_owned()
        })?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // A redirect would carry the secret URL's content elsewhere; a
            // webhook that moved is a configuration error.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mlops-alert-router/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a URL is replaced whole before its path is.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            client,
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            timeout,
            secrets,
        })
    }

    /// The strings to scrub for a URL: the URL itself, its path and its query.
    pub fn url_secrets(url: &str) -> Vec<String> {
        let mut out = vec![url.to_owned()];
        if let Ok(u) = Url::parse(url) {
            if u.path().len() > 1 {
                out.push(u.path().to_owned());
            }
            if let Some(q) = u.query() {
                out.push(q.to_owned());
            }
        }
        out
    }

    /// `s` with every secret replaced by `<redacted>`.
    pub fn scrub(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Waits until the destination's rate limit allows one more request.
    pub async fn acquire(&self) {
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    /// Sends `body` as JSON; 2xx → the answer, else the classified error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: &HeaderMap,
        body: &serde_json::Value,
    ) -> Result<Reply, ActionError> {
        self.acquire().await;
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ActionError::Permanent(format!("cannot encode the message: {e}")))?;
        let response = self
            .client
            .request(method, url)
            .headers(headers.clone())
            // Teams counts a body without a charset as UTF-16: say it.
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|e| self.network_error(e))?;
        if status.is_success() {
            return Ok(Reply {
                status: status.as_u16(),
                body: text,
            });
        }
        let detail = super::limits::clip(text.trim(), 200);
        let message = self.scrub(&if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        });
        Err(if status.as_u16() == 429 {
            ActionError::Retryable {
                message,
                // Discord also says it in the body, in (fractional) seconds.
                retry_after: retry_after.or_else(|| body_retry_after(&text)),
            }
        } else if status.is_server_error() {
            ActionError::Retryable {
                message,
                retry_after,
            }
        } else {
            ActionError::Permanent(message)
        })
    }

    fn network_error(&self, e: reqwest::Error) -> ActionError {
        let permanent = e.is_builder();
        let message = if e.is_timeout() {
            format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )
        } else {
            // reqwest's Display is terse ("error sending request"); the causes say why.
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        };
        let message = self.scrub(&message);
        if permanent {
            ActionError::Permanent(message)
        } else {
            ActionError::Retryable {
                message,
                retry_after: None,
            }
        }
    }
}

/// `Retry-After`: seconds (possibly fractional) or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return None,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn body_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v.get("retry_after")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(80) && got <= Duration::from_secs(90),
            "{got:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        assert_eq!(
            body_retry_after(r#"{"message": "You are being rate limited.", "retry_after": 0.25}"#),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn scrub_removes_the_url_and_its_parts() {
        let url = "https://hooks.example/services/T0/B0/SECRETSECRET?token=abc123";
        let d = Delivery::new(
            Duration::from_secs(1),
            RateLimit {
                per_second: 1.0,
                burst: 1,
            },
            Delivery::url_secrets(url),
        )
        .unwrap();
        assert_eq!(
            d.scrub(&format!("posting to {url} failed")),
            "posting to <redacted> failed"
        );
        assert_eq!(
            d.scrub("404 for /services/T0/B0/SECRETSECRET"),
            "404 for <redacted>"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_waits_instead_of_failing() {
        let d = Delivery::new(
            Duration::from_secs(1),
            RateLimit {
                per_second: 2.0,
                burst: 2,
            },
            Vec::new(),
        )
        .unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            d.acquire().await;
        }
        // Two at once (the burst), then one every 500 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }
}

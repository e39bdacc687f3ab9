//! Delivery: one HTTP request through the router's outbound transport
//! ([`crate::outbound`]), its answer classified, under a per-destination rate
//! limit.
//!
//! Only 2xx is success. 429 and 5xx, network errors and timeouts are
//! retryable (the pipeline schedules the retry, at least `Retry-After`
//! later, capped by the action's backoff and `max_age`); any other status,
//! a redirect (never followed) and a success answer over
//! [`ANSWER_LIMIT`] are permanent. Errors name the destination without its
//! secrets and the cause; every form of the action's secrets is scrubbed.

use super::RateLimit;
use crate::act::ActionError;
use crate::outbound::{CaPolicy, Options, Scrubber, Transport};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use std::num::NonZeroU32;
use std::time::Duration;
use url::Url;

pub use crate::outbound::retry_after;

/// Longest wait taken from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = crate::outbound::MAX_RETRY_AFTER;

/// Most bytes of a success answer read. Slack's `chat.postMessage` answer
/// echoes the message (at most 12,000 characters of text in 50 blocks, up to
/// 6 bytes each when JSON-escaped, plus the blocks' JSON); the other
/// platforms answer a few bytes.
pub const ANSWER_LIMIT: usize = 256 * 1024;

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
    transport: Transport,
    limiter: Limiter,
    clock: TokioClock,
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
    /// A sender with this timeout per request and rate limit; every form of
    /// `secrets` (a URL also by its parts) is scrubbed from errors.
    pub fn new(
        tls: &CaPolicy,
        timeout: Duration,
        rate: RateLimit,
        secrets: Vec<String>,
    ) -> Result<Self, String> {
        let quota = rate.quota().ok_or_else(|| {
            "rate_limit: per_second must be in (0, 1e6] and burst at least 1".to_owned()
        })?;
        let mut scrubber = Scrubber::new();
        for secret in &secrets {
            if Url::parse(secret.trim()).is_ok_and(|u| u.has_host()) {
                scrubber.add_url(secret);
            } else {
                scrubber.add(secret);
            }
        }
        let transport = Transport::new(tls, Options::new(timeout, ANSWER_LIMIT), scrubber)?;
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        Ok(Self {
            transport,
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        })
    }

    /// The strings to scrub for a secret URL (its parts are derived by [`Delivery::new`]).
    pub fn url_secrets(url: &str) -> Vec<String> {
        vec![url.to_owned()]
    }

    /// `s` with every form of every secret replaced by `<redacted>`.
    pub fn scrub(&self, s: &str) -> String {
        self.transport.scrubber().scrub(s)
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
        let request = self
            .transport
            .client()
            .request(method, url)
            .headers(headers.clone())
            // Teams counts a body without a charset as UTF-16: say it.
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(bytes);
        match self.transport.send(request).await {
            Ok(answer) => Ok(Reply {
                status: answer.status.as_u16(),
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            }),
            Err(mut e) => {
                if e.kind == crate::outbound::Kind::Status(429) && e.retry_after.is_none() {
                    // Discord also says it in the body, in (fractional) seconds.
                    e.retry_after = body_retry_after(&e.body);
                }
                if matches!(
                    e.kind,
                    crate::outbound::Kind::TooLarge | crate::outbound::Kind::Incomplete(_)
                ) {
                    e.message
                        .push_str("; the message was delivered, so it is not sent again");
                }
                Err(ActionError::from(e))
            }
        }
    }
}

fn body_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v.get("retry_after")?.as_f64()?;
    (secs >= 0.0).then(|| {
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::RETRY_AFTER;

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
            &CaPolicy::default(),
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
            &CaPolicy::default(),
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

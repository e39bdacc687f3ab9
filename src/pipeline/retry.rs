//! Retry: what one attempt's result makes of its run (succeeded, retry at a
//! time, dead), as a pure function, and the backoff between attempts.

use crate::act::{ActionError, RetryLimits};
use crate::store::RunOutcome;
use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::Value;
use std::time::Duration;

/// When to try a failed run again, and when to give up (`worker.*`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    /// Give up once a run's next attempt would start this long after its first.
    pub max_age: Option<Duration>,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, after `attempt` failures: exponential with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max)
    }

    /// The limits of a run of an action with `own` limits: the action's own
    /// win over `worker.*`.
    pub fn limits(&self, own: RetryLimits) -> Limits {
        Limits {
            max_attempts: own.max_attempts.unwrap_or(self.max_attempts),
            max_age: own.max_age.or(self.max_age),
            backoff_max: self.max,
        }
    }
}

/// The limits that apply to one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_attempts: u32,
    pub max_age: Option<Duration>,
    /// The longest wait between attempts, `Retry-After` included.
    pub backoff_max: Duration,
}

/// One finished attempt, as the retry decision sees it (times in Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This attempt's number, from 1.
    pub number: u32,
    /// When the run's first attempt started.
    pub first_attempt_at: i64,
    /// When this attempt finished.
    pub finished_at: i64,
    /// The backoff drawn for this attempt ([`RetryPolicy::delay`]).
    pub backoff: Duration,
}

/// What the attempt's `result` makes of the run: the retry decision.
pub fn decide(result: Result<Value, ActionError>, attempt: Attempt, limits: Limits) -> RunOutcome {
    let n = attempt.number;
    match result {
        Ok(result) => RunOutcome::Succeeded { result },
        Err(ActionError::Permanent(error)) => RunOutcome::Dead { error },
        Err(ActionError::Retryable { message, .. }) if n >= limits.max_attempts => {
            RunOutcome::Dead {
                error: format!("gave up after {n} attempts: {message}"),
            }
        }
        Err(ActionError::Retryable {
            message,
            retry_after,
        }) => {
            // A Retry-After is honoured up to worker.backoff_max: an
            // absurd one (10^9 s) cannot park a run; a server still
            // refusing then costs an attempt, and max_attempts ends it.
            let asked = retry_after.unwrap_or_default();
            let wait = attempt.backoff.max(asked.min(limits.backoff_max));
            let retry_at = attempt.finished_at + wait.as_millis() as i64;
            let asked_until = attempt.finished_at.saturating_add(asked.as_millis() as i64);
            let first = attempt.first_attempt_at;
            match limits.max_age {
                // The destination asked for a wait past the run's max_age.
                Some(age)
                    if retry_after.is_some() && asked_until - first > age.as_millis() as i64 =>
                {
                    RunOutcome::Dead {
                        error: format!(
                            "gave up after {n} attempts: the destination asked to wait {} (Retry-After), over max_age {}: {message}",
                            humantime::format_duration(Duration::from_secs(asked.as_secs())),
                            humantime::format_duration(age)
                        ),
                    }
                }
                // The next attempt would come too late to be worth making.
                Some(age) if retry_at - first > age.as_millis() as i64 => RunOutcome::Dead {
                    error: format!(
                        "gave up after {n} attempts: the next one would be over max_age {}: {message}",
                        humantime::format_duration(age)
                    ),
                },
                _ => RunOutcome::Retry {
                    error: message,
                    retry_at,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_800_000_000_000;
    const SECOND: i64 = 1000;

    fn limits(max_attempts: u32, max_age: Option<u64>) -> Limits {
        Limits {
            max_attempts,
            max_age: max_age.map(Duration::from_secs),
            backoff_max: Duration::from_secs(60),
        }
    }

    fn attempt(number: u32, backoff_s: u64) -> Attempt {
        Attempt {
            number,
            first_attempt_at: T0,
            finished_at: T0 + 10 * SECOND,
            backoff: Duration::from_secs(backoff_s),
        }
    }

    fn retryable(retry_after: Option<u64>) -> Result<Value, ActionError> {
        Err(ActionError::Retryable {
            message: "HTTP 503".into(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn dead_error(o: RunOutcome) -> String {
        match o {
            RunOutcome::Dead { error } => error,
            other => panic!("not dead: {other:?}"),
        }
    }

    #[test]
    fn success_succeeds_and_a_permanent_error_is_dead_at_once() {
        let r = decide(Ok(json!({"ok": 1})), attempt(1, 1), limits(5, None));
        assert!(matches!(r, RunOutcome::Succeeded { result } if result == json!({"ok": 1})));
        let r = decide(
            Err(ActionError::Permanent("HTTP 400".into())),
            attempt(1, 1),
            limits(5, None),
        );
        assert_eq!(dead_error(r), "HTTP 400");
    }

    #[test]
    fn a_retryable_error_waits_the_backoff_or_a_longer_retry_after_up_to_the_max() {
        let at = |o: RunOutcome| match o {
            RunOutcome::Retry { retry_at, error } => {
                assert_eq!(error, "HTTP 503");
                retry_at
            }
            other => panic!("not a retry: {other:?}"),
        };
        let finished = T0 + 10 * SECOND;
        assert_eq!(
            at(decide(retryable(None), attempt(1, 2), limits(5, None))),
            finished + 2 * SECOND
        );
        // A Retry-After longer than the backoff wins; a shorter one does not.
        assert_eq!(
            at(decide(retryable(Some(30)), attempt(1, 2), limits(5, None))),
            finished + 30 * SECOND
        );
        assert_eq!(
            at(decide(retryable(Some(1)), attempt(1, 2), limits(5, None))),
            finished + 2 * SECOND
        );
        // An absurd Retry-After is capped at backoff_max.
        assert_eq!(
            at(decide(
                retryable(Some(1_000_000_000)),
                attempt(1, 2),
                limits(5, None)
            )),
            finished + 60 * SECOND
        );
    }

    #[test]
    fn the_last_attempt_is_dead() {
        let e = dead_error(decide(retryable(None), attempt(3, 2), limits(3, None)));
        assert_eq!(e, "gave up after 3 attempts: HTTP 503");
        assert!(matches!(
            decide(retryable(None), attempt(2, 2), limits(3, None)),
            RunOutcome::Retry { .. }
        ));
    }

    #[test]
    fn max_age_ends_a_run_whose_next_attempt_or_asked_wait_would_pass_it() {
        // Finished 10 s after the first attempt; max_age 15 s.
        let e = dead_error(decide(retryable(None), attempt(1, 6), limits(9, Some(15))));
        assert_eq!(
            e,
            "gave up after 1 attempts: the next one would be over max_age 15s: HTTP 503"
        );
        assert!(matches!(
            decide(retryable(None), attempt(1, 5), limits(9, Some(15))),
            RunOutcome::Retry { .. }
        ));
        // The destination asks for more than max_age allows (even past backoff_max).
        let e = dead_error(decide(
            retryable(Some(3600)),
            attempt(1, 1),
            limits(9, Some(15)),
        ));
        assert_eq!(
            e,
            "gave up after 1 attempts: the destination asked to wait 1h (Retry-After), over max_age 15s: HTTP 503"
        );
    }

    #[test]
    fn the_actions_own_limits_win_over_the_workers() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_age: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            policy.limits(RetryLimits::default()),
            Limits {
                max_attempts: 5,
                max_age: Some(Duration::from_secs(3600)),
                backoff_max: Duration::from_secs(60)
            }
        );
        let own = RetryLimits {
            max_attempts: Some(2),
            max_age: Some(Duration::from_secs(60)),
        };
        assert_eq!(policy.limits(own).max_attempts, 2);
        assert_eq!(policy.limits(own).max_age, Some(Duration::from_secs(60)));
    }
}

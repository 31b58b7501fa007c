//! Retrying with a deadline. Two schedules, because "nothing listens" and "something answers
//! 5xx" are different situations:
//!
//! * **Probe** (connection refused, DNS failure, connect timeout): nothing is there to
//!   overload, and the pod is waiting, so probe at a steady `DCR_PROBE_INTERVAL` (±20% jitter
//!   so a fleet does not synchronise; the first gap is two intervals, so that with the
//!   immediate first attempt a run never averages more than one attempt per interval). A
//!   steady interval notices recovery within one interval at a fixed, low connection rate;
//!   exponential growth would leave us asleep long after the IdP came up.
//! * **Backoff** (5xx, 429, timeouts and resets after connecting): a process answers but is
//!   not ready or is overloaded. Exponential backoff with full jitter
//!   (`random(0, min(max, initial·2ⁿ))`, AWS "Exponential Backoff And Jitter"), never shorter
//!   than the server's `Retry-After` (capped by `DCR_RETRY_AFTER_MAX`).
//!
//! Both stop at the overall wall-clock deadline (`DCR_TIMEOUT`), which also bounds each
//! request's timeout. If the next wait would end past the deadline we stop at once.

use crate::duration::show;
use crate::error::{Error, Result};
use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Policy {
    pub start: Instant,
    pub deadline: Instant,
    pub request_timeout: Duration,
    pub probe_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub retry_after_max: Duration,
}

/// What one attempt of an operation came to.
pub enum Attempt<T> {
    Done(T),
    /// Worth another try. `unreachable` selects the probe schedule.
    Retry {
        reason: String,
        unreachable: bool,
        retry_after: Option<Duration>,
    },
    Fatal(Error),
}

/// Counts HTTP requests over the whole run, and how many of them were retries, for the
/// summary line ("5 requests, 0 retries" reads as a clean run; "5 attempts" did not).
#[derive(Default)]
pub struct Attempts {
    requests: Cell<u32>,
    retries: Cell<u32>,
}

impl Attempts {
    pub fn get(&self) -> u32 {
        self.requests.get()
    }
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }
    fn bump(&self, retry: bool) -> u32 {
        self.requests.set(self.requests.get() + 1);
        if retry {
            self.retries.set(self.retries.get() + 1);
        }
        self.requests.get()
    }
}

/// How often a wait is reported at INFO: the first failure, then one line per this period
/// (each attempt is at DEBUG). Two lines a second for five minutes told nobody anything.
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The delay schedule of one operation.
pub struct Schedule<'a> {
    policy: &'a Policy,
    backoff_step: u32,
    probes: u32,
}

impl<'a> Schedule<'a> {
    pub fn new(policy: &'a Policy) -> Self {
        Schedule {
            policy,
            backoff_step: 0,
            probes: 0,
        }
    }

    pub fn next_delay(&mut self, unreachable: bool, retry_after: Option<Duration>) -> Duration {
        let p = self.policy;
        if unreachable && retry_after.is_none() {
            // The first gap is two intervals: with the immediate first attempt, a run never
            // averages more than one attempt per interval, however short the outage.
            let gaps = if self.probes == 0 { 2.0 } else { 1.0 };
            self.probes += 1;
            return p
                .probe_interval
                .mul_f64(gaps * (0.8 + 0.4 * fastrand::f64()));
        }
        let exp = p.backoff_initial.saturating_mul(
            1u32.checked_shl(self.backoff_step.min(20))
                .unwrap_or(u32::MAX),
        );
        self.backoff_step += 1;
        let cap = exp.min(p.backoff_max);
        let jittered = cap.mul_f64(fastrand::f64());
        match retry_after {
            Some(ra) => jittered.max(ra.min(p.retry_after_max)),
            None => jittered,
        }
    }
}

impl Policy {
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn total(&self) -> Duration {
        self.deadline.saturating_duration_since(self.start)
    }

    /// Runs `op` until it is done, fatal, or the deadline passes. `op` receives the timeout
    /// for this attempt: the request timeout, shortened to what is left of the deadline.
    pub async fn run<T, F, Fut>(&self, attempts: &Attempts, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut schedule = Schedule::new(self);
        let mut tries = 0u32;
        let mut reported = Instant::now();
        loop {
            let remaining = self.remaining();
            if remaining.is_zero() {
                return Err(Error::Deadline(format!(
                    "{what}: DCR_TIMEOUT ({}) passed before an attempt could be made",
                    show(self.total())
                )));
            }
            tries += 1;
            let n = attempts.bump(tries > 1);
            tracing::debug!(what, attempt = n, "sending");
            match op(self.request_timeout.min(remaining)).await {
                Attempt::Done(v) => {
                    if tries > 1 {
                        tracing::info!(
                            "{what} succeeded after {tries} attempts in {}",
                            show(self.start.elapsed())
                        );
                    }
                    return Ok(v);
                }
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry {
                    reason,
                    unreachable,
                    retry_after,
                } => {
                    let delay = schedule.next_delay(unreachable, retry_after);
                    let remaining = self.remaining();
                    if delay >= remaining {
                        return Err(Error::Deadline(format!(
                            "{what}: gave up after {tries} attempt(s) in {}; the next retry would pass DCR_TIMEOUT ({}); last error: {reason}",
                            show(self.start.elapsed()),
                            show(self.total())
                        )));
                    }
                    if tries == 1 {
                        tracing::info!(
                            "{what} is not done yet ({reason}); retrying until DCR_TIMEOUT, {} left \
                             (progress every {}s; each attempt at DEBUG)",
                            show(remaining),
                            WAIT_REPORT_EVERY.as_secs()
                        );
                        reported = Instant::now();
                    } else if reported.elapsed() >= WAIT_REPORT_EVERY {
                        tracing::info!(
                            "{what}: still retrying after {tries} attempts in {} (last: {reason}); {} left of DCR_TIMEOUT",
                            show(self.start.elapsed()),
                            show(remaining)
                        );
                        reported = Instant::now();
                    }
                    tracing::debug!(
                        "{what} failed ({reason}); retry {tries} in {}{}",
                        show(delay),
                        retry_after
                            .map(|ra| if ra > self.retry_after_max {
                                format!(
                                    " (Retry-After {} capped to DCR_RETRY_AFTER_MAX {})",
                                    show(ra),
                                    show(self.retry_after_max)
                                )
                            } else {
                                format!(" (Retry-After {})", show(ra))
                            })
                            .unwrap_or_default()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let now = Instant::now();
        Policy {
            start: now,
            deadline: now + Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            retry_after_max: Duration::from_secs(60),
        }
    }

    #[test]
    fn probe_stays_near_the_interval() {
        let p = policy();
        let mut s = Schedule::new(&p);
        let first = s.next_delay(true, None);
        assert!(
            first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        for _ in 0..1000 {
            let d = s.next_delay(true, None);
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(600),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let p = policy();
        let caps = [500u64, 1000, 2000, 4000, 8000, 8000, 8000];
        for (step, cap) in caps.into_iter().enumerate() {
            // 2,000 draws of the delay after `step` earlier backoffs.
            let draws: Vec<f64> = (0..2000)
                .map(|_| {
                    let mut s = Schedule::new(&p);
                    for _ in 0..step {
                        s.next_delay(false, None);
                    }
                    s.next_delay(false, None).as_secs_f64() * 1000.0 / cap as f64
                })
                .collect();
            let max = draws.iter().cloned().fold(0.0, f64::max);
            let min = draws.iter().cloned().fold(1.0, f64::min);
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            // Under the cap, and spread over all of [0, cap]: uniform, not a fixed step.
            assert!(max <= 1.0, "step {step}: {max} of the cap");
            assert!(max > 0.95 && min < 0.05, "step {step}: [{min}, {max}]");
            assert!((0.45..0.55).contains(&mean), "step {step}: mean {mean}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let p = policy();
        let mut s = Schedule::new(&p);
        assert!(s.next_delay(false, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert_eq!(
            s.next_delay(false, Some(Duration::from_secs(86_400))),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn stops_when_the_next_wait_passes_the_deadline() {
        let mut p = policy();
        p.deadline = p.start + Duration::from_secs(5);
        let attempts = Attempts::default();
        let r: Result<()> = p
            .run(&attempts, "op", |_| async {
                Attempt::Retry {
                    reason: "503".into(),
                    unreachable: false,
                    retry_after: Some(Duration::from_secs(30)),
                }
            })
            .await;
        assert!(matches!(r, Err(Error::Deadline(_))));
        assert_eq!(attempts.get(), 1);
    }
}

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
//!   not ready or is overloaded, and every request is work for it. Attempts are anchored to a
//!   doubling schedule counted from the operation's first attempt (`initial·(2ⁿ − 1)`: 1, 3,
//!   7, 15, 31, 63, 127 s with the defaults, gaps capped at `DCR_BACKOFF_MAX`), each drawn
//!   uniformly from the last 60 % of its gap (at most 4 s) and never after its anchor. So a run sends no more
//!   requests than a plain doubling retry (curl's `--retry`) and is never later than it to
//!   notice recovery, while a fleet that started together is spread over each gap instead of
//!   arriving in synchronized waves. Anchoring (rather than drawing each delay from the last
//!   one) keeps the jitter from drifting the schedule earlier, which would add requests.
//!   Never shorter than the server's `Retry-After` (capped by `DCR_RETRY_AFTER_MAX`); an
//!   answer that arrives after its anchor moves the schedule on from there.
//!   bench/README.md has the measurements that chose this over full jitter.
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

/// The share of each backoff gap over which an attempt is spread (the gap's last 60 %), at
/// most `MAX_WINDOW`: wide enough to flatten a fleet that started within a second or two,
/// narrow enough that a long gap's attempt does not come much earlier than its anchor (which
/// would add an attempt to a long outage).
const SPREAD: f64 = 0.6;
const MAX_WINDOW: Duration = Duration::from_secs(4);

/// The delay schedule of one operation.
pub struct Schedule<'a> {
    policy: &'a Policy,
    backoff_step: u32,
    probes: u32,
    /// The operation's first attempt: backoff anchors count from here.
    origin: Instant,
    /// The anchor of the last backoff attempt, from `origin`.
    anchor: Duration,
}

impl<'a> Schedule<'a> {
    pub fn new(policy: &'a Policy) -> Self {
        Schedule {
            policy,
            backoff_step: 0,
            probes: 0,
            origin: Instant::now(),
            anchor: Duration::ZERO,
        }
    }

    pub fn next_delay(&mut self, unreachable: bool, retry_after: Option<Duration>) -> Duration {
        let now = self.origin.elapsed();
        self.next_delay_at(unreachable, retry_after, now)
    }

    /// [`Schedule::next_delay`] at `now`, the time since the operation's first attempt.
    fn next_delay_at(
        &mut self,
        unreachable: bool,
        retry_after: Option<Duration>,
        now: Duration,
    ) -> Duration {
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
        let gap = p
            .backoff_initial
            .saturating_mul(
                1u32.checked_shl(self.backoff_step.min(20))
                    .unwrap_or(u32::MAX),
            )
            .min(p.backoff_max);
        self.backoff_step += 1;
        // A late answer moves the schedule on from now, never into a burst.
        let from = self.anchor.max(now);
        self.anchor = from + gap;
        let window = gap.mul_f64(SPREAD).min(MAX_WINDOW);
        let target = from + gap - window.mul_f64(fastrand::f64());
        let jittered = target.saturating_sub(now);
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

    /// Each attempt falls in the last 60 % of its doubling gap, counted from the first
    /// attempt, and never after its anchor: 1, 3, 7, 15 s with a 1 s start (here 0.5 s), gaps
    /// capped; uniform within the window, so a fleet is spread.
    #[test]
    fn backoff_attempts_are_anchored_to_a_doubling_schedule() {
        let p = policy();
        // Anchors (ms from the first attempt) with initial 500 ms and a cap of 8 s.
        let gaps = [500u64, 1000, 2000, 4000, 8000, 8000, 8000];
        for step in 0..gaps.len() {
            let anchor: u64 = gaps[..=step].iter().sum();
            let window = (gaps[step] as f64 * SPREAD).min(MAX_WINDOW.as_millis() as f64);
            let draws: Vec<f64> = (0..2000)
                .map(|_| {
                    let mut s = Schedule::new(&p);
                    // A simulated clock: each attempt happens when its delay says, and
                    // fails at once.
                    let mut at = Duration::ZERO;
                    for _ in 0..=step {
                        at += s.next_delay_at(false, None, at);
                    }
                    at.as_secs_f64() * 1000.0
                })
                .collect();
            let max = draws.iter().cloned().fold(0.0, f64::max);
            let min = draws.iter().cloned().fold(f64::MAX, f64::min);
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let a = anchor as f64;
            // Never after the anchor (a plain doubling retry's time), never earlier than
            // the window, spread over all of it.
            assert!(max <= a + 5.0, "step {step}: {max} after the anchor {a}");
            assert!(
                min >= a - window - 5.0,
                "step {step}: {min} before the window"
            );
            assert!(
                max > a - 0.05 * window && min < a - 0.95 * window,
                "step {step}: [{min}, {max}]"
            );
            assert!(
                (mean - (a - window / 2.0)).abs() < 0.05 * window,
                "step {step}: mean {mean}"
            );
        }
    }

    /// An answer that arrives after its anchor (a slow 503) does not turn the schedule into
    /// a burst of catch-up attempts: the next gap is counted from when it arrived.
    #[test]
    fn a_late_answer_moves_the_schedule_on() {
        let p = policy();
        let mut s = Schedule::new(&p);
        let first = s.next_delay_at(false, None, Duration::ZERO);
        // The attempt's answer took 5 s, far past the next anchors (0.5 s, 1.5 s).
        let late = first + Duration::from_secs(5);
        let d = s.next_delay_at(false, None, late);
        assert!(d >= Duration::from_millis(400), "{d:?}");
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

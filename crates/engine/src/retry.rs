//! When and how long to wait before trying a failed registry request again.

use std::time::Duration;

use crate::observe::{Direction, ObserverHandle, RetryCause};

#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait; each later one doubles.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Told of every retry: every place that retries holds the policy.
    pub observer: ObserverHandle,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            observer: ObserverHandle::default(),
        }
    }
}

impl RetryPolicy {
    /// Reports a retry: one line at info with its cause and the error (registry errors carry
    /// no credentials, and URLs lose their query), and the observer is told.
    pub fn note_retry(
        &self,
        direction: Direction,
        registry: &str,
        cause: RetryCause,
        attempt: u32,
        what: &str,
        error: &dyn std::fmt::Display,
    ) {
        tracing::info!(
            direction = direction.as_str(),
            registry,
            %cause,
            attempt,
            %error,
            "{what} failed; retrying"
        );
        self.observer.retried(registry, cause);
    }

    /// The wait after failed attempt `attempt` (1-based): exponential with ±20 % jitter, so that
    /// parallel uploads hit by one outage do not come back in lockstep, or the registry's
    /// `Retry-After` when it gave one (capped, so a hostile value cannot park a push for hours).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.clamp(Duration::from_millis(100), self.max_delay * 4);
        }
        let exp = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let jitter = rand::random_range(0.8..1.2);
        exp.min(self.max_delay).mul_f64(jitter)
    }
}

/// Sleeps for `total`, calling `show` with the whole seconds left, once per second, as moby's
/// "Retrying in N seconds" does.
pub(crate) async fn countdown(total: Duration, mut show: impl FnMut(u64)) {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let seconds = left.as_secs_f64().ceil() as u64;
        show(seconds);
        // Sleep until the whole-second count drops by one.
        tokio::time::sleep(left.saturating_sub(Duration::from_secs(seconds - 1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_respect_retry_after() {
        let p = RetryPolicy::default();
        let d1 = p.delay(1, None);
        assert!(d1 >= Duration::from_millis(800) && d1 <= Duration::from_millis(1200));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(3200) && d3 <= Duration::from_millis(4800));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn countdown_shows_each_second() {
        let mut shown = Vec::new();
        countdown(Duration::from_millis(2500), |s| shown.push(s)).await;
        assert_eq!(shown, vec![3, 2, 1]);
    }
}

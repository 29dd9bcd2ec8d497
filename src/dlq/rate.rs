//! Token buckets for replay rate limits: one global bucket and one per endpoint. The bucket is
//! a pure function of time ([`Bucket::reserve`]); [`Limiter`] sleeps on tokio time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` saved up. Reserving a token never
/// fails: it says how long to wait until the token is there (the reservation is kept, so
/// concurrent callers queue fairly and the long-run rate is exact).
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket starting with one token (no initial burst: the measured rate starts at `rate`).
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        let burst = burst.max(1.0);
        Bucket { rate, burst, tokens: 1.0, at: now }
    }

    /// Takes one token at `now`; returns how long after `now` the caller must wait before using
    /// it. The bucket's clock may be ahead of `now` (a reservation made for a later time), so the
    /// wait is `max(at, now) − now + deficit / rate`.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        if now > self.at {
            let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.at = now;
        }
        self.tokens -= 1.0;
        let ahead = self.at.saturating_duration_since(now);
        if self.tokens >= 0.0 {
            ahead
        } else {
            // The deficit is paid back at `rate`; later reservations queue behind it.
            ahead + Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Global and per-endpoint buckets, shared by all replay workers.
#[derive(Debug)]
pub struct Limiter {
    global: Option<Mutex<Bucket>>,
    per_endpoint: Option<(f64, Mutex<HashMap<String, Bucket>>)>,
}

impl Limiter {
    /// `rate` and `endpoint_rate` in requests per second; `None` is unlimited.
    pub fn new(rate: Option<f64>, endpoint_rate: Option<f64>) -> Limiter {
        let now = Instant::now();
        Limiter {
            global: rate.map(|r| Mutex::new(Bucket::new(r, 1.0, now))),
            per_endpoint: endpoint_rate.map(|r| (r, Mutex::new(HashMap::new()))),
        }
    }

    /// Waits until one request to `endpoint` may go out under both limits.
    pub async fn acquire(&self, endpoint: &str) {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        if let Some((rate, buckets)) = &self.per_endpoint {
            let mut map = buckets.lock().unwrap_or_else(|e| e.into_inner());
            let bucket = map.entry(endpoint.to_string()).or_insert_with(|| Bucket::new(*rate, 1.0, now));
            wait = wait.max(bucket.reserve(now));
        }
        if let Some(global) = &self.global {
            // Reserve the global token for when the endpoint's token is there, so a slow endpoint
            // does not hold global tokens it cannot use yet (the wait is counted from then).
            wait += global.lock().unwrap_or_else(|e| e.into_inner()).reserve(now + wait);
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates callers that each go as soon as the bucket allows; returns the send times.
    fn simulate(rate: f64, burst: f64, n: usize) -> Vec<f64> {
        let start = Instant::now();
        let mut b = Bucket::new(rate, burst, start);
        let mut t = start;
        let mut sends = Vec::new();
        for _ in 0..n {
            let wait = b.reserve(t);
            t += wait;
            sends.push(t.duration_since(start).as_secs_f64());
        }
        sends
    }

    #[test]
    fn back_to_back_callers_get_exactly_the_rate() {
        let sends = simulate(50.0, 1.0, 501);
        let span = sends.last().unwrap() - sends.first().unwrap();
        assert!((span - 10.0).abs() < 1e-6, "500 intervals at 50/s take 10s, took {span}");
    }

    #[test]
    fn idle_time_saves_at_most_burst_tokens() {
        let start = Instant::now();
        let mut b = Bucket::new(10.0, 3.0, start);
        assert_eq!(b.reserve(start), Duration::ZERO);
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.reserve(later), Duration::ZERO);
        }
        let wait = b.reserve(later);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn a_reservation_for_later_delays_earlier_callers_by_the_gap() {
        let start = Instant::now();
        let mut b = Bucket::new(1.0, 1.0, start);
        assert_eq!(b.reserve(start), Duration::ZERO);
        // Reserved for 10s from now (behind another bucket's wait): the token is due then.
        assert_eq!(b.reserve(start + Duration::from_secs(10)), Duration::ZERO);
        // A caller now queues behind it: 10s until the clock, then 1s for its own token.
        let wait = b.reserve(start);
        assert!((wait.as_secs_f64() - 11.0).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn concurrent_reservations_queue() {
        let start = Instant::now();
        let mut b = Bucket::new(4.0, 1.0, start);
        let waits: Vec<f64> = (0..4).map(|_| b.reserve(start).as_secs_f64()).collect();
        assert_eq!(waits, vec![0.0, 0.25, 0.5, 0.75]);
    }

    proptest::proptest! {
        #[test]
        fn long_run_rate_never_exceeds_the_limit(rate in 1.0f64..500.0, n in 2usize..400) {
            let sends = simulate(rate, 1.0, n);
            let span = sends.last().unwrap() - sends.first().unwrap();
            proptest::prop_assert!(((n - 1) as f64 / span - rate).abs() / rate < 1e-6);
        }
    }
}

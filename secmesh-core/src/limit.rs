//! Rate limits as the generic cell rate algorithm (GCRA): a rate, a burst, and one number per
//! key (the theoretical arrival time, TAT). No I/O and no clock: the caller gives "now" and
//! keeps the TAT (in process, or in Redis for a fleet).
//!
//! A limit of `rate` requests per `period` with a burst of `burst` lets a key make `burst`
//! requests at once and then one every `period / rate`. The emission interval `T = period /
//! rate` and the tolerance `tau = T x (burst - 1)`: a request at `now` is allowed when `now >=
//! TAT - tau`, and then `TAT = max(TAT, now) + T`. One subtraction and one comparison per
//! decision, whatever the traffic; the state of an idle key is worth nothing once `TAT <= now`
//! (it can be dropped).
//!
//! The answer carries what the IETF httpapi RateLimit headers say: the limit, how many requests
//! remain now, and when the key is back to a full burst; a refusal says when to retry.
//!
//! # Example
//! ```
//! use secmesh_core::limit::{Rate, Verdict};
//!
//! let rate: Rate = "10/s".parse::<Rate>()?.burst(5)?;
//! let mut tat = 0u64; // a new key
//! let now = 1_000_000_000u64; // nanoseconds, any epoch
//! for _ in 0..5 {
//!     let v = rate.check(tat, now);
//!     assert!(v.allowed());
//!     tat = v.tat();
//! }
//! let v = rate.check(tat, now);
//! assert!(!v.allowed());
//! assert_eq!(v.retry_after_ns(), 100_000_000); // one emission interval: 100 ms
//! # Ok::<(), secmesh_core::limit::RateError>(())
//! ```

use std::fmt;
use std::str::FromStr;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Why a rate could not be read or built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// Not `N/s`, `N/min`, `N/h` or `N/d` with `N >= 1`.
    #[error("a rate is N/s, N/min, N/h or N/d with N >= 1")]
    Syntax,
    /// The burst is 0 or more than 1,000,000.
    #[error("a burst is 1 to 1,000,000")]
    Burst,
    /// More than one request per nanosecond, or a period too long.
    #[error("the rate is out of range")]
    Range,
}

/// A rate with its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u64,
    period_secs: u64,
    burst: u64,
    /// The emission interval, ns.
    t: u64,
}

impl Rate {
    /// `count` requests per `period_secs` seconds, burst 1.
    pub fn new(count: u64, period_secs: u64) -> Result<Rate, RateError> {
        if count == 0 || period_secs == 0 || period_secs > 86_400 * 366 {
            return Err(RateError::Range);
        }
        let t = period_secs
            .checked_mul(NS_PER_SEC)
            .ok_or(RateError::Range)?
            / count;
        if t == 0 {
            return Err(RateError::Range);
        }
        Ok(Rate {
            count,
            period_secs,
            burst: 1,
            t,
        })
    }

    /// With `burst` requests allowed at once.
    pub fn burst(mut self, burst: u64) -> Result<Rate, RateError> {
        if burst == 0 || burst > 1_000_000 {
            return Err(RateError::Burst);
        }
        self.burst = burst;
        Ok(self)
    }

    /// The requests per period.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The period, seconds.
    pub fn period_secs(&self) -> u64 {
        self.period_secs
    }

    /// The burst.
    pub fn burst_size(&self) -> u64 {
        self.burst
    }

    /// The emission interval `period / count`, ns.
    pub fn emission_interval_ns(&self) -> u64 {
        self.t
    }

    /// The tolerance `T x (burst - 1)`, ns.
    pub fn tolerance_ns(&self) -> u64 {
        self.t.saturating_mul(self.burst - 1)
    }

    /// Decide a request at `now` (ns) for a key whose TAT is `tat` (0 for a new key).
    pub fn check(&self, tat: u64, now: u64) -> Verdict {
        let tau = self.tolerance_ns();
        let tat = tat.max(now);
        let allow_at = tat.saturating_sub(tau);
        if now < allow_at {
            return Verdict {
                allowed: false,
                tat,
                retry_after_ns: allow_at - now,
                remaining: 0,
                reset_ns: tat - now,
                limit: self.burst,
            };
        }
        let new_tat = tat.saturating_add(self.t);
        // Requests left now: how many more emission intervals fit under the tolerance.
        let used = new_tat - now;
        let remaining = (tau + self.t).saturating_sub(used) / self.t;
        Verdict {
            allowed: true,
            tat: new_tat,
            retry_after_ns: 0,
            remaining,
            reset_ns: used,
            limit: self.burst,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period_secs {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            86_400 => "d".to_owned(),
            n => format!("{n}s"),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for Rate {
    type Err = RateError;

    /// `N/s`, `N/min`, `N/h`, `N/d`.
    fn from_str(s: &str) -> Result<Rate, RateError> {
        let (n, unit) = s.split_once('/').ok_or(RateError::Syntax)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 12 {
            return Err(RateError::Syntax);
        }
        let count: u64 = n.parse().map_err(|_| RateError::Syntax)?;
        let period = match unit {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(RateError::Syntax),
        };
        Rate::new(count, period)
    }
}

/// The outcome of one [`Rate::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    allowed: bool,
    tat: u64,
    retry_after_ns: u64,
    remaining: u64,
    reset_ns: u64,
    limit: u64,
}

impl Verdict {
    /// Whether the request may go.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The key's TAT to keep (unchanged on a refusal).
    pub fn tat(&self) -> u64 {
        self.tat
    }

    /// For a refusal: how long until a request would be allowed, ns (0 when allowed).
    pub fn retry_after_ns(&self) -> u64 {
        self.retry_after_ns
    }

    /// For `Retry-After`: whole seconds, at least 1 for a refusal.
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            0
        } else {
            self.retry_after_ns.div_ceil(NS_PER_SEC).max(1)
        }
    }

    /// Requests the key may still make now (the `RateLimit` header's `r`).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Until the key is back to a full burst, whole seconds (the `RateLimit` header's `t`).
    pub fn reset_secs(&self) -> u64 {
        self.reset_ns.div_ceil(NS_PER_SEC)
    }

    /// The burst (the `RateLimit-Policy` quota).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A verdict read back from a shared store (`allowed`, the TAT kept, retry-after,
    /// remaining, reset, all as the store's script computed them).
    pub fn from_parts(
        allowed: bool,
        tat: u64,
        retry_after_ns: u64,
        remaining: u64,
        reset_ns: u64,
        limit: u64,
    ) -> Verdict {
        Verdict {
            allowed,
            tat,
            retry_after_ns,
            remaining,
            reset_ns,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    #[test]
    fn parse_and_print() {
        for (s, t) in [
            ("10/s", S / 10),
            ("60/min", S),
            ("1/h", 3600 * S),
            ("2/d", 43_200 * S),
        ] {
            let r: Rate = s.parse().unwrap();
            assert_eq!(r.emission_interval_ns(), t, "{s}");
            assert_eq!(r.to_string(), s);
        }
        for bad in [
            "",
            "10",
            "/s",
            "0/s",
            "-1/s",
            "1.5/s",
            "10/sec",
            "10/ s",
            "1000000000000/s",
            "9999999999999/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "1/s".parse::<Rate>().unwrap().burst(0),
            Err(RateError::Burst)
        );
    }

    #[test]
    fn a_burst_then_the_rate() {
        let r = "10/s".parse::<Rate>().unwrap().burst(3).unwrap();
        let mut tat = 0;
        let now = 100 * S;
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let v = r.check(tat, now);
            assert!(v.allowed());
            remaining.push(v.remaining());
            tat = v.tat();
        }
        assert_eq!(remaining, [2, 1, 0]);
        let v = r.check(tat, now);
        assert!(!v.allowed());
        assert_eq!(v.retry_after_ns(), S / 10);
        assert_eq!(v.retry_after_secs(), 1);
        assert_eq!(v.tat(), tat, "a refusal keeps the state");
        // One interval later, one more.
        assert!(r.check(tat, now + S / 10).allowed());
        // An idle key is back to a full burst.
        let v = r.check(tat, now + 10 * S);
        assert!(v.allowed() && v.remaining() == 2);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        // 1,000 requests spread over 10 s at 50/s with burst 10: at most 10 + 50 x 10 pass.
        let r = "50/s".parse::<Rate>().unwrap().burst(10).unwrap();
        let mut tat = 0;
        let mut passed = 0;
        for i in 0..10_000u64 {
            let now = 1_000 * S + i * S / 1000; // 1,000 per second for 10 s
            let v = r.check(tat, now);
            if v.allowed() {
                passed += 1;
                tat = v.tat();
            }
        }
        assert!((500..=510).contains(&passed), "{passed}");
    }
}

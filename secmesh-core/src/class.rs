//! Expiry classes: time built into the architecture.
//!
//! Every token belongs to one class, and its lifetime (`exp - iat`) may not exceed the class
//! bound. A route declares the slowest class it accepts: a fast token is accepted where medium
//! is allowed, a slow token is refused on a fast route.
//!
//! # Example
//! ```
//! use secmesh_core::class::{ClassBounds, ExpiryClass};
//!
//! let bounds = ClassBounds::default();
//! assert_eq!(bounds.bound(ExpiryClass::Fast), 180);
//! assert!(ExpiryClass::Fast.accepted_by(ExpiryClass::Medium));
//! assert!(!ExpiryClass::Slow.accepted_by(ExpiryClass::Fast));
//! assert_eq!("medium".parse::<ExpiryClass>().unwrap(), ExpiryClass::Medium);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The expiry class of a token, ordered from the shortest-lived to the longest-lived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryClass {
    /// API calls; the default for everything interactive (180 s by default).
    Fast,
    /// Replication and redirect protocols such as 3-D Secure (5400 s by default).
    Medium,
    /// Reconciliation and batch work (86400 s by default).
    Slow,
}

impl ExpiryClass {
    /// All classes, fastest first.
    pub const ALL: [ExpiryClass; 3] = [ExpiryClass::Fast, ExpiryClass::Medium, ExpiryClass::Slow];

    /// The wire name: `fast`, `medium` or `slow`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExpiryClass::Fast => "fast",
            ExpiryClass::Medium => "medium",
            ExpiryClass::Slow => "slow",
        }
    }

    /// The default lifetime bound of this class, in seconds.
    pub const fn default_bound(self) -> u64 {
        match self {
            ExpiryClass::Fast => 180,
            ExpiryClass::Medium => 5400,
            ExpiryClass::Slow => 86400,
        }
    }

    /// Whether a token of this class is accepted where `slowest` is the slowest class allowed.
    pub fn accepted_by(self, slowest: ExpiryClass) -> bool {
        self <= slowest
    }
}

impl fmt::Display for ExpiryClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no expiry class.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown expiry class (expected fast, medium or slow)")]
#[non_exhaustive]
pub struct UnknownClass;

impl FromStr for ExpiryClass {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(ExpiryClass::Fast),
            "medium" => Ok(ExpiryClass::Medium),
            "slow" => Ok(ExpiryClass::Slow),
            _ => Err(UnknownClass),
        }
    }
}

/// The lifetime bound of each class, in seconds.
///
/// The defaults are 180 / 5400 / 86400 s. Custom bounds must be positive and must not shrink
/// from a faster class to a slower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassBounds {
    bounds: [u64; 3],
}

impl Default for ClassBounds {
    fn default() -> Self {
        ClassBounds {
            bounds: ExpiryClass::ALL.map(ExpiryClass::default_bound),
        }
    }
}

/// The error for class bounds that are zero or out of order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "class bounds must be positive and ordered fast <= medium <= slow (got {fast}/{medium}/{slow})"
)]
#[non_exhaustive]
pub struct InvalidBounds {
    /// The fast bound given.
    pub fast: u64,
    /// The medium bound given.
    pub medium: u64,
    /// The slow bound given.
    pub slow: u64,
}

impl ClassBounds {
    /// Custom bounds in seconds.
    pub fn new(fast: u64, medium: u64, slow: u64) -> Result<Self, InvalidBounds> {
        if fast == 0 || fast > medium || medium > slow {
            return Err(InvalidBounds { fast, medium, slow });
        }
        Ok(ClassBounds {
            bounds: [fast, medium, slow],
        })
    }

    /// The bound of `class`, in seconds.
    pub const fn bound(&self, class: ExpiryClass) -> u64 {
        self.bounds[class as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_acceptance() {
        assert!(ExpiryClass::Fast < ExpiryClass::Medium && ExpiryClass::Medium < ExpiryClass::Slow);
        for route in ExpiryClass::ALL {
            for token in ExpiryClass::ALL {
                assert_eq!(token.accepted_by(route), token as u8 <= route as u8);
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for c in ExpiryClass::ALL {
            assert_eq!(c.as_str().parse::<ExpiryClass>(), Ok(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        assert!("Fast".parse::<ExpiryClass>().is_err());
        assert!("".parse::<ExpiryClass>().is_err());
    }

    #[test]
    fn bounds_validate() {
        assert_eq!(ClassBounds::default().bound(ExpiryClass::Slow), 86400);
        assert!(ClassBounds::new(0, 1, 2).is_err());
        assert!(ClassBounds::new(10, 5, 20).is_err());
        assert!(ClassBounds::new(10, 20, 15).is_err());
        let b = ClassBounds::new(60, 60, 3600).unwrap();
        assert_eq!(b.bound(ExpiryClass::Medium), 60);
    }
}

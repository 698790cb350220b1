//! Grants: what a token's `scope` allows, each `verb:object-pattern`.
//!
//! A scope is a space-separated list of grants. The verb is a verb or `*`; the object pattern
//! follows the same rules as policy object patterns (`*`, a trailing `**`, `{sub}`). A grant
//! covers a request when its verb pattern matches the verb and its object pattern matches the
//! object.
//!
//! # Example
//! ```
//! use secmesh_core::policy::grant::parse_scope;
//! use secmesh_core::svo::{Object, Subject, Verb};
//!
//! let grants = parse_scope("read:orders/* write:orders/42").unwrap();
//! assert_eq!(grants.len(), 2);
//! let sub: Subject = "user:alice".parse().unwrap();
//! let obj: Object = "orders/7".parse().unwrap();
//! assert!(grants[0].covers(&Verb::Read, &obj, &sub));
//! assert!(!grants[1].covers(&Verb::Read, &obj, &sub));
//! assert!(parse_scope("read").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use super::pattern::{ObjectPattern, PatternError, VerbPattern};
use crate::svo::{Object, Subject, Verb};

/// The most grants one scope may carry.
pub const MAX_GRANTS: usize = 256;

/// Why a grant or scope was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// A grant without the `:` between verb and object pattern.
    #[error("grant must be verb:object-pattern")]
    MissingColon,
    /// The verb part is invalid.
    #[error("invalid grant verb: {0}")]
    Verb(PatternError),
    /// The object pattern is invalid.
    #[error("invalid grant object pattern: {0}")]
    Object(PatternError),
    /// More than [`MAX_GRANTS`] grants.
    #[error("more than {MAX_GRANTS} grants in scope")]
    TooMany,
}

/// One grant from a token's scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    verb: VerbPattern,
    object: ObjectPattern,
}

impl Grant {
    /// The verb pattern.
    pub fn verb(&self) -> &VerbPattern {
        &self.verb
    }

    /// The object pattern.
    pub fn object(&self) -> &ObjectPattern {
        &self.object
    }

    /// Whether this grant covers `verb` on `object`, with `{sub}` standing for `subject`.
    pub fn covers(&self, verb: &Verb, object: &Object, subject: &Subject) -> bool {
        self.covers_str(verb.as_str(), object.as_str(), subject.as_str())
    }

    pub(crate) fn covers_str(&self, verb: &str, object: &str, subject: &str) -> bool {
        self.verb.matches(verb) && self.object.matches(object, subject)
    }
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (verb, object) = s.split_once(':').ok_or(GrantError::MissingColon)?;
        Ok(Grant {
            verb: verb.parse().map_err(GrantError::Verb)?,
            object: object.parse().map_err(GrantError::Object)?,
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.verb, self.object)
    }
}

/// Parse a space-separated scope into grants. Runs of spaces are allowed; an empty scope
/// grants nothing.
pub fn parse_scope(scope: &str) -> Result<Vec<Grant>, GrantError> {
    let mut out = Vec::new();
    for part in scope.split(' ').filter(|p| !p.is_empty()) {
        if out.len() == MAX_GRANTS {
            return Err(GrantError::TooMany);
        }
        out.push(part.parse()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_cover() {
        let g: Grant = "*:orders/{sub}/**".parse().unwrap();
        assert_eq!(g.to_string(), "*:orders/{sub}/**");
        let sub: Subject = "alice".parse().unwrap();
        let obj: Object = "orders/alice/1".parse().unwrap();
        assert!(g.covers(&Verb::Delete, &obj, &sub));
        let other: Subject = "bob".parse().unwrap();
        assert!(!g.covers(&Verb::Delete, &obj, &other));
    }

    #[test]
    fn errors() {
        assert_eq!("read".parse::<Grant>(), Err(GrantError::MissingColon));
        assert_eq!(
            ":orders".parse::<Grant>(),
            Err(GrantError::Verb(PatternError::InvalidVerb))
        );
        assert_eq!(
            "read:".parse::<Grant>(),
            Err(GrantError::Object(PatternError::Empty))
        );
        assert_eq!(
            "read:a/**/b".parse::<Grant>(),
            Err(GrantError::Object(PatternError::DoubleStarNotLast))
        );
        assert_eq!(
            "read:a\tb".parse::<Grant>(),
            Err(GrantError::Object(PatternError::InvalidChar))
        );
        let many = vec!["read:a"; MAX_GRANTS + 1].join(" ");
        assert_eq!(parse_scope(&many), Err(GrantError::TooMany));
        assert_eq!(parse_scope("  ").unwrap(), vec![]);
        assert_eq!(parse_scope(" read:a  read:b ").unwrap().len(), 2);
    }
}

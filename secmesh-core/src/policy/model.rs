//! The policy data model: rules, their effect and mode.
//!
//! A [`Rule`] matches a request when every field it sets matches: the subject one of its
//! `subjects` globs, the verb one of its `verbs`, the object one of its `objects` patterns, the
//! caller (when the rule has `callers`) one of its `callers` globs, and the class (when the rule
//! has `max_class`) no slower than `max_class`. A rule with `callers` never matches a request
//! without a caller; a rule with `max_class` never matches a request without a class.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Effect, Mode, Policy};
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "read-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/**"]
//! mode = "shadow"
//! "#).unwrap();
//! let rule = &policy.rules()[0];
//! assert_eq!(rule.id(), "read-orders");
//! assert_eq!(rule.effect(), Effect::Allow);
//! assert_eq!(rule.mode(), Mode::Shadow);
//! assert_eq!(rule.objects()[0].as_str(), "orders/**");
//! ```

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::engine::Request;
use super::pattern::{Glob, ObjectPattern, VerbPattern};
use crate::class::ExpiryClass;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Let the request through.
    Allow,
    /// Refuse the request.
    Deny,
}

impl Effect {
    /// `allow` or `deny`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule is enforced or only evaluated and reported (dry run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rule decides (the default).
    #[default]
    Enforce,
    /// The rule is evaluated beside the enforced rules and reported, never enforced.
    Shadow,
}

impl Mode {
    /// `enforce` or `shadow`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's id: unique within a policy, cheap to clone into decisions.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(Arc<str>);

impl RuleId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn new(s: &str) -> RuleId {
        RuleId(Arc::from(s))
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

/// One validated policy rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub(crate) id: RuleId,
    pub(crate) effect: Effect,
    pub(crate) subjects: Vec<Glob>,
    pub(crate) verbs: Vec<VerbPattern>,
    pub(crate) objects: Vec<ObjectPattern>,
    pub(crate) callers: Option<Vec<Glob>>,
    pub(crate) max_class: Option<ExpiryClass>,
    pub(crate) attributes: Vec<(Box<str>, Vec<Glob>)>,
    pub(crate) mode: Mode,
}

impl Rule {
    /// The rule's id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The rule's id, shareable.
    pub fn rule_id(&self) -> &RuleId {
        &self.id
    }

    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Enforce or shadow.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The subject globs.
    pub fn subjects(&self) -> &[Glob] {
        &self.subjects
    }

    /// The verb patterns.
    pub fn verbs(&self) -> &[VerbPattern] {
        &self.verbs
    }

    /// The object patterns.
    pub fn objects(&self) -> &[ObjectPattern] {
        &self.objects
    }

    /// The caller globs, when the rule restricts the calling workload.
    pub fn callers(&self) -> Option<&[Glob]> {
        self.callers.as_deref()
    }

    /// The slowest expiry class the rule accepts, when it restricts classes.
    pub fn max_class(&self) -> Option<ExpiryClass> {
        self.max_class
    }

    /// The attribute conditions: each name with the globs one of the request's values for that
    /// name must match. Empty when the rule sets none.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &[Glob])> {
        self.attributes.iter().map(|(n, g)| (&**n, g.as_slice()))
    }

    /// Whether the rule matches the request (its mode and effect aside).
    pub fn matches(&self, req: &Request<'_>) -> bool {
        if let Some(max) = self.max_class {
            match req.class {
                Some(c) if c.accepted_by(max) => {}
                _ => return false,
            }
        }
        if let Some(callers) = &self.callers {
            match req.caller {
                Some(c) if callers.iter().any(|g| g.matches(c)) => {}
                _ => return false,
            }
        }
        for (name, globs) in &self.attributes {
            let found = req
                .attributes
                .iter()
                .any(|(n, v)| *n == &**name && globs.iter().any(|g| g.matches(v)));
            if !found {
                return false;
            }
        }
        let verb = req.verb.as_str();
        if !self.verbs.iter().any(|v| v.matches(verb)) {
            return false;
        }
        let subject = req.subject.as_str();
        let object = req.object.as_str();
        self.objects.iter().any(|o| o.matches(object, subject))
            && self.subjects.iter().any(|s| s.matches(subject))
    }
}

//! What failed: the kinds of rule conditions and the typed first failure of one rule.

use std::fmt;

use crate::class::ExpiryClass;
use crate::policy::pattern::{Glob, ObjectPattern, VerbPattern};

/// The most patterns of one list a [`Failure`]'s `Display` prints.
const SHOWN: usize = 5;

/// One kind of rule condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// `subjects`.
    Subject,
    /// `verbs`.
    Verb,
    /// `objects`.
    Object,
    /// `callers`.
    Caller,
    /// `max_class`.
    Class,
    /// One entry of `attributes`.
    Attribute,
    /// The token's grants (not a rule condition: the scope must cover the request too).
    Grant,
}

impl Condition {
    /// The stable word: `subject`, `verb`, `object`, `caller`, `class`, `attribute`, `grant`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Condition::Subject => "subject",
            Condition::Verb => "verb",
            Condition::Object => "object",
            Condition::Caller => "caller",
            Condition::Class => "class",
            Condition::Attribute => "attribute",
            Condition::Grant => "grant",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first condition of a rule that a request failed, with what the request had and what
/// the rule wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The subject matches none of the rule's `subjects`.
    Subject {
        /// The request's subject.
        subject: Box<str>,
        /// The rule's globs.
        subjects: Vec<Glob>,
    },
    /// The verb matches none of the rule's `verbs`.
    Verb {
        /// The request's verb.
        verb: Box<str>,
        /// The rule's patterns.
        verbs: Vec<VerbPattern>,
    },
    /// The object matches none of the rule's `objects` (with `{sub}` the request's subject).
    Object {
        /// The request's object.
        object: Box<str>,
        /// The rule's patterns.
        objects: Vec<ObjectPattern>,
    },
    /// The rule has `callers`; the request has no caller (`None`) or one that matches none.
    Caller {
        /// The request's caller, if it had one.
        caller: Option<Box<str>>,
        /// The rule's globs.
        callers: Vec<Glob>,
    },
    /// The rule has `max_class`; the request has no class (`None`) or a slower one.
    Class {
        /// The request's (the token's) class, if known.
        class: Option<ExpiryClass>,
        /// The slowest class the rule accepts.
        max_class: ExpiryClass,
    },
    /// The rule requires attribute `name`; the request has no value for it (`values` empty)
    /// or none that one of the globs matches.
    Attribute {
        /// The attribute's name.
        name: Box<str>,
        /// The request's values for it.
        values: Vec<Box<str>>,
        /// The rule's globs.
        globs: Vec<Glob>,
    },
    /// Every condition of the (allow) rule matched, but the request carried grants and none
    /// covers its verb and object.
    Grant {
        /// The request's verb.
        verb: Box<str>,
        /// The request's object.
        object: Box<str>,
    },
}

impl Failure {
    /// Which condition failed.
    pub fn condition(&self) -> Condition {
        match self {
            Failure::Subject { .. } => Condition::Subject,
            Failure::Verb { .. } => Condition::Verb,
            Failure::Object { .. } => Condition::Object,
            Failure::Caller { .. } => Condition::Caller,
            Failure::Class { .. } => Condition::Class,
            Failure::Attribute { .. } => Condition::Attribute,
            Failure::Grant { .. } => Condition::Grant,
        }
    }
}

/// `[a, b, c, … and 4 more]`.
fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    f.write_str("[")?;
    for (i, it) in items.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{it}")?;
    }
    if items.len() > SHOWN {
        write!(f, ", … and {} more", items.len() - SHOWN)?;
    }
    f.write_str("]")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.condition())?;
        match self {
            Failure::Subject { subject, subjects } => {
                write!(f, "`{subject}` matches none of ")?;
                list(f, subjects)
            }
            Failure::Verb { verb, verbs } => {
                write!(f, "`{verb}` matches none of ")?;
                list(f, verbs)
            }
            Failure::Object { object, objects } => {
                write!(f, "`{object}` matches none of ")?;
                list(f, objects)
            }
            Failure::Caller {
                caller: None,
                callers,
            } => {
                f.write_str("the request has no caller; the rule wants one of ")?;
                list(f, callers)
            }
            Failure::Caller {
                caller: Some(c),
                callers,
            } => {
                write!(f, "`{c}` matches none of ")?;
                list(f, callers)
            }
            Failure::Class {
                class: None,
                max_class,
            } => write!(
                f,
                "the request has no class; the rule accepts {max_class} or faster"
            ),
            Failure::Class {
                class: Some(c),
                max_class,
            } => write!(f, "a {c} token; the rule accepts {max_class} or faster"),
            Failure::Attribute {
                name,
                values,
                globs,
            } if values.is_empty() => {
                write!(f, "no value for `{name}`; the rule wants one of ")?;
                list(f, globs)
            }
            Failure::Attribute {
                name,
                values,
                globs,
            } => {
                write!(f, "`{name}` = ")?;
                list(f, values)?;
                f.write_str(" matches none of ")?;
                list(f, globs)
            }
            Failure::Grant { verb, object } => {
                write!(f, "no grant of the token covers `{verb}` on `{object}`")
            }
        }
    }
}

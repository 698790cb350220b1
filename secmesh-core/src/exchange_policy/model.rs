//! The exchange policy's data model: rules and their conditions.
//!
//! An [`ExchangeRule`] matches an [`ExchangeAsk`] when every condition it sets holds: the
//! requesting workload matches one of its `workloads` globs, the subject token's type one of
//! its `subject_token_types`, the issuer (when the rule has `issuers`) is one of them, the
//! subject (when the rule has `subjects`) matches one of those globs, and the audience is one
//! of its `audiences`. A rule with `issuers` never matches an ask without an issuer (an
//! internal subject token such as a txn-token or a self-signed request has none).
//!
//! # Example
//! ```
//! use secmesh_core::exchange::SubjectTokenType;
//! use secmesh_core::exchange_policy::{ExchangePolicy, TokenTypePattern};
//! use secmesh_core::ExpiryClass;
//!
//! let policy = ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "batch"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/batch-*"]
//! subject_token_types = ["self_signed", "urn:example:token-type:job"]
//! audiences = ["mesh.test"]
//! scopes = ["read:ledger/**"]
//! max_class = "slow"
//! "#).unwrap();
//! let rule = &policy.rules()[0];
//! assert_eq!(rule.id(), "batch");
//! assert_eq!(rule.max_class(), ExpiryClass::Slow);
//! assert_eq!(rule.subject_token_types()[0], TokenTypePattern::Type(SubjectTokenType::SelfSigned));
//! assert!(!rule.subject_token_types()[1].is_known());
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::ask::ExchangeAsk;
use crate::class::ExpiryClass;
use crate::exchange::SubjectTokenType;
use crate::policy::pattern::MAX_PATTERN_LEN;
use crate::policy::{Effect, Glob, Grant, Mode, RuleId};

/// The short names of the subject token types, with the type each stands for.
const SHORT_NAMES: [(&str, SubjectTokenType); 6] = [
    ("access_token", SubjectTokenType::AccessToken),
    ("id_token", SubjectTokenType::IdToken),
    ("jwt", SubjectTokenType::Jwt),
    ("txn_token", SubjectTokenType::TxnToken),
    ("self_signed", SubjectTokenType::SelfSigned),
    ("unsigned_json", SubjectTokenType::UnsignedJson),
];

/// An entry of `subject_token_types`: `*`, a short name or a full token type URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypePattern {
    /// `*`: any subject token type.
    Any,
    /// Exactly this type.
    Type(SubjectTokenType),
}

impl TokenTypePattern {
    /// Whether the pattern matches the type `t`.
    pub fn matches(&self, t: &SubjectTokenType) -> bool {
        match self {
            TokenTypePattern::Any => true,
            TokenTypePattern::Type(mine) => mine.as_str() == t.as_str(),
        }
    }

    /// Whether the pattern is `*` or one of the types of the draft (a URI of another type
    /// may be a typo: lint reports it).
    pub fn is_known(&self) -> bool {
        !matches!(self, TokenTypePattern::Type(SubjectTokenType::Other(_)))
    }

    /// `*` or the type's URI.
    pub fn as_str(&self) -> &str {
        match self {
            TokenTypePattern::Any => "*",
            TokenTypePattern::Type(t) => t.as_str(),
        }
    }

    /// Parse `*`, a short name (`access_token`, `id_token`, `jwt`, `txn_token`,
    /// `self_signed`, `unsigned_json`) or a token type URI.
    pub fn parse(s: &str) -> Result<TokenTypePattern, &'static str> {
        if s == "*" {
            return Ok(TokenTypePattern::Any);
        }
        if let Some((_, t)) = SHORT_NAMES.iter().find(|(name, _)| *name == s) {
            return Ok(TokenTypePattern::Type(t.clone()));
        }
        if !s.contains(':') {
            return Err(
                "unknown short name (access_token, id_token, jwt, txn_token, \
                        self_signed, unsigned_json), and not a token type URI",
            );
        }
        SubjectTokenType::from_uri(s)
            .map(TokenTypePattern::Type)
            .map_err(|_| "not a token type URI a subject token may have")
    }
}

impl fmt::Display for TokenTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry of `audiences`: `*` or one exact audience (a trust domain).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudiencePattern {
    /// `*`: any audience.
    Any,
    /// Exactly this audience.
    Exact(Box<str>),
}

impl AudiencePattern {
    /// Whether the pattern matches `audience`.
    pub fn matches(&self, audience: &str) -> bool {
        match self {
            AudiencePattern::Any => true,
            AudiencePattern::Exact(a) => **a == *audience,
        }
    }

    /// `*` or the audience.
    pub fn as_str(&self) -> &str {
        match self {
            AudiencePattern::Any => "*",
            AudiencePattern::Exact(a) => a,
        }
    }
}

/// A non-empty, bounded string without whitespace or control characters.
fn check_word(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_PATTERN_LEN {
        return Err("longer than 1024 bytes");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace or control character");
    }
    Ok(())
}

fn deserialize_with<'de, D, T>(
    d: D,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, &'static str>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&s).map_err(|e| serde::de::Error::custom(format_args!("invalid {what} `{s}`: {e}")))
}

impl<'de> Deserialize<'de> for TokenTypePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, "subject token type", |s| {
            check_word(s)?;
            TokenTypePattern::parse(s)
        })
    }
}

impl<'de> Deserialize<'de> for AudiencePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, "audience", |s| {
            check_word(s)?;
            match s {
                "*" => Ok(AudiencePattern::Any),
                _ if s.contains('*') => Err("an audience is exact or `*`"),
                _ => Ok(AudiencePattern::Exact(s.into())),
            }
        })
    }
}

/// An exact issuer (`iss`) of a subject token.
pub(crate) struct Issuer(pub(crate) Box<str>);

impl<'de> Deserialize<'de> for Issuer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, "issuer", |s| {
            check_word(s)?;
            if s.contains('*') {
                return Err("issuers are exact (leave `issuers` out for any issuer)");
            }
            Ok(Issuer(s.into()))
        })
    }
}

/// A word of a subject token's own `scope` (an IdP's OAuth scope), exact.
pub(crate) struct ScopeWord(pub(crate) Box<str>);

impl<'de> Deserialize<'de> for ScopeWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, "subject scope", |s| {
            check_word(s)?;
            if s.contains('*') {
                return Err("subject scopes are exact words");
            }
            Ok(ScopeWord(s.into()))
        })
    }
}

/// A grant of `scopes`, in the one grant grammar.
pub(crate) struct RawGrant(pub(crate) Grant);

impl<'de> Deserialize<'de> for RawGrant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse::<Grant>()
            .map(RawGrant)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid grant `{s}`: {e}")))
    }
}

/// One validated exchange rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeRule {
    pub(crate) id: RuleId,
    pub(crate) effect: Effect,
    pub(crate) workloads: Vec<Glob>,
    pub(crate) subject_token_types: Vec<TokenTypePattern>,
    pub(crate) issuers: Option<Vec<Box<str>>>,
    pub(crate) subject_scopes: Option<Vec<Box<str>>>,
    pub(crate) subjects: Option<Vec<Glob>>,
    pub(crate) audiences: Vec<AudiencePattern>,
    pub(crate) scopes: Vec<Grant>,
    pub(crate) max_class: ExpiryClass,
    pub(crate) mode: Mode,
}

impl ExchangeRule {
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

    /// The globs on the requesting workload.
    pub fn workloads(&self) -> &[Glob] {
        &self.workloads
    }

    /// The subject token types.
    pub fn subject_token_types(&self) -> &[TokenTypePattern] {
        &self.subject_token_types
    }

    /// The exact issuers, when the rule restricts them.
    pub fn issuers(&self) -> Option<impl Iterator<Item = &str>> {
        self.issuers.as_ref().map(|i| i.iter().map(|s| &**s))
    }

    /// The words the subject token's own `scope` must all carry, when the rule requires them.
    pub fn subject_scopes(&self) -> Option<impl Iterator<Item = &str>> {
        self.subject_scopes.as_ref().map(|w| w.iter().map(|s| &**s))
    }

    /// The globs on the subject, when the rule restricts it.
    pub fn subjects(&self) -> Option<&[Glob]> {
        self.subjects.as_deref()
    }

    /// The audiences.
    pub fn audiences(&self) -> &[AudiencePattern] {
        &self.audiences
    }

    /// The grants an allow rule lets be issued (empty for a deny rule).
    pub fn scopes(&self) -> &[Grant] {
        &self.scopes
    }

    /// The slowest expiry class an allow rule lets be issued (`fast` unless set).
    pub fn max_class(&self) -> ExpiryClass {
        self.max_class
    }

    /// Whether every condition but the audience holds for `ask`.
    pub(crate) fn matches_except_audience(&self, ask: &ExchangeAsk<'_>) -> bool {
        if !self
            .subject_token_types
            .iter()
            .any(|t| t.matches(ask.subject_token_type))
        {
            return false;
        }
        if let Some(issuers) = &self.issuers {
            match ask.issuer {
                Some(iss) if issuers.iter().any(|i| **i == *iss) => {}
                _ => return false,
            }
        }
        if let Some(words) = &self.subject_scopes
            && !words
                .iter()
                .all(|w| ask.subject_scopes.iter().any(|have| **w == **have))
        {
            return false;
        }
        if let Some(subjects) = &self.subjects
            && !subjects.iter().any(|g| g.matches(ask.subject))
        {
            return false;
        }
        self.workloads.iter().any(|g| g.matches(ask.workload))
    }

    /// Whether the audience condition holds for `audience`.
    pub(crate) fn audience_matches(&self, audience: &str) -> bool {
        self.audiences.iter().any(|a| a.matches(audience))
    }
}

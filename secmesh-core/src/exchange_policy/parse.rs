//! Loading an exchange policy from TOML or JSON text.
//!
//! Both formats carry the same model: a top-level `exchange` array of rule tables. Unknown
//! keys (at the top and in a rule), a key given twice, duplicate rule ids, invalid globs,
//! grants, token types, audiences or issuers, a deny rule with `scopes` or `max_class`, an
//! allow rule without `scopes` are refused with the position in the text and the rule (its
//! index from 0 and, when it can be read, its id). The limits are the access policy's:
//! [`MAX_POLICY_LEN`] bytes, [`MAX_RULES`] rules, [`MAX_ID_LEN`] bytes of id,
//! [`MAX_LIST_LEN`] entries per list, and [`MAX_GRANTS`] grants per rule. Nothing here reads
//! a file: the caller brings the text.
//!
//! # Example
//! ```
//! use secmesh_core::exchange_policy::ExchangePolicy;
//!
//! let err = ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "no-batch"
//! effect = "deny"
//! workloads = ["spiffe://mesh.test/batch"]
//! subject_token_types = ["*"]
//! audiences = ["*"]
//! scopes = ["read:**"]
//! "#).unwrap_err();
//! assert_eq!(err.rule_index(), Some(0));
//! assert_eq!(err.rule_id(), Some("no-batch"));
//! assert_eq!(err.position().unwrap().line, 3);
//! assert!(err.to_string().contains("a deny rule takes no `scopes`"), "{err}");
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use crate::policy::grant::MAX_GRANTS;
pub use crate::policy::parse::{MAX_ID_LEN, MAX_LIST_LEN, MAX_POLICY_LEN, MAX_RULES};

use super::decide::ExchangePolicy;
use super::model::{AudiencePattern, ExchangeRule, Issuer, RawGrant, ScopeWord, TokenTypePattern};
use crate::class::ExpiryClass;
use crate::policy::parse::{Bounded, RawId, refine_to_element};
use crate::policy::{Effect, Format, Glob, Mode, Position, RuleId};

/// Why an exchange policy text was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangePolicyError {
    /// The text is larger than [`MAX_POLICY_LEN`].
    #[error("exchange policy is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not UTF-8.
    #[error("exchange policy is not UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// The offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not a valid exchange policy.
    #[error(
        "invalid {format} exchange policy{}{}: {message}",
        position.map(|p| format!(" at {p}")).unwrap_or_default(),
        rule_label(*rule, rule_id.as_deref())
    )]
    Invalid {
        /// The format being read.
        format: Format,
        /// Where in the text, when the parser knows.
        position: Option<Position>,
        /// The rule being read, from 0, when the error is inside one.
        rule: Option<usize>,
        /// That rule's id, when it can be read.
        rule_id: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn rule_label(rule: Option<usize>, id: Option<&str>) -> String {
    match (rule, id) {
        (Some(i), Some(id)) => format!(", rule #{} `{id}`", i + 1),
        (Some(i), None) => format!(", rule #{}", i + 1),
        _ => String::new(),
    }
}

impl ExchangePolicyError {
    /// Where in the text the error is, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            ExchangePolicyError::Invalid { position, .. } => *position,
            _ => None,
        }
    }

    /// The rule the error is in, from 0, when it is in one.
    pub fn rule_index(&self) -> Option<usize> {
        match self {
            ExchangePolicyError::Invalid { rule, .. } => *rule,
            _ => None,
        }
    }

    /// The id of the rule the error is in, when it can be read.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            ExchangePolicyError::Invalid { rule_id, .. } => rule_id.as_deref(),
            _ => None,
        }
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> String {
        match self {
            ExchangePolicyError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// Where the reader is: the rule being read, and whether the error concerns the whole rule
/// (its position is then the rule's id).
#[derive(Default)]
struct Progress {
    rule: Cell<Option<usize>>,
    whole_rule: Cell<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: RawId,
    effect: Effect,
    workloads: Bounded<Glob>,
    subject_token_types: Bounded<TokenTypePattern>,
    #[serde(default)]
    issuers: Option<Bounded<Issuer>>,
    #[serde(default)]
    subject_scopes: Option<Bounded<ScopeWord>>,
    #[serde(default)]
    subjects: Option<Bounded<Glob>>,
    audiences: Bounded<AudiencePattern>,
    #[serde(default)]
    scopes: Option<Bounded<RawGrant>>,
    #[serde(default)]
    max_class: Option<ExpiryClass>,
    #[serde(default)]
    mode: Mode,
}

impl RawRule {
    fn check(self) -> Result<ExchangeRule, String> {
        let id = self.id.0;
        let scopes = match (self.effect, self.scopes) {
            (Effect::Deny, Some(_)) => {
                return Err(
                    "a deny rule takes no `scopes` (deny rules match on workloads, \
                     subject_token_types, issuers, subjects and audiences only)"
                        .to_owned(),
                );
            }
            (Effect::Deny, None) => Vec::new(),
            (Effect::Allow, None) => {
                return Err("an allow rule needs `scopes`: the grants it lets be issued".to_owned());
            }
            (Effect::Allow, Some(Bounded(s))) if s.len() > MAX_GRANTS => {
                return Err(format!("more than {MAX_GRANTS} grants in `scopes`"));
            }
            (Effect::Allow, Some(Bounded(s))) => s.into_iter().map(|g| g.0).collect(),
        };
        if self.effect == Effect::Deny && self.max_class.is_some() {
            return Err(
                "a deny rule takes no `max_class` (deny rules match on workloads, \
                 subject_token_types, issuers, subjects and audiences only)"
                    .to_owned(),
            );
        }
        Ok(ExchangeRule {
            id: RuleId::new(&id),
            effect: self.effect,
            workloads: self.workloads.0,
            subject_token_types: self.subject_token_types.0,
            issuers: self
                .issuers
                .map(|Bounded(i)| i.into_iter().map(|i| i.0).collect()),
            subject_scopes: self
                .subject_scopes
                .map(|Bounded(w)| w.into_iter().map(|w| w.0).collect()),
            subjects: self.subjects.map(|s| s.0),
            audiences: self.audiences.0,
            scopes,
            max_class: self.max_class.unwrap_or(ExpiryClass::Fast),
            mode: self.mode,
        })
    }
}

/// Reads one rule and checks its id against the ones before it.
struct RuleSeed<'a> {
    seen: &'a mut HashSet<String>,
    progress: &'a Progress,
}

impl<'de> DeserializeSeed<'de> for RuleSeed<'_> {
    type Value = ExchangeRule;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ExchangeRule, D::Error> {
        let raw = RawRule::deserialize(d)?;
        let whole = |message: String| {
            self.progress.whole_rule.set(true);
            serde::de::Error::custom(message)
        };
        if !self.seen.insert(raw.id.0.clone()) {
            return Err(whole(format!("duplicate rule id `{}`", raw.id.0)));
        }
        raw.check().map_err(whole)
    }
}

/// The `exchange` array.
struct RulesSeed<'a>(&'a Progress);

impl<'de> DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = Vec<ExchangeRule>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RulesSeed<'_> {
    type Value = Vec<ExchangeRule>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of exchange rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        loop {
            self.0.rule.set(Some(rules.len()));
            let seed = RuleSeed {
                seen: &mut seen,
                progress: self.0,
            };
            let Some(rule) = seq.next_element_seed(seed)? else {
                break;
            };
            if rules.len() == MAX_RULES {
                return Err(serde::de::Error::custom(format_args!(
                    "more than {MAX_RULES} rules in one exchange policy"
                )));
            }
            rules.push(rule);
        }
        self.0.rule.set(None);
        Ok(rules)
    }
}

/// The whole file: only the `exchange` key, at most once.
struct FileSeed<'a>(&'a Progress);

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Vec<ExchangeRule>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an exchange policy (a table with an `exchange` list)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rules = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "exchange" {
                return Err(serde::de::Error::unknown_field(&key, &["exchange"]));
            }
            if rules.is_some() {
                return Err(serde::de::Error::duplicate_field("exchange"));
            }
            rules = Some(map.next_value_seed(RulesSeed(self.0))?);
        }
        Ok(rules.unwrap_or_default())
    }
}

fn check_len(len: usize) -> Result<(), ExchangePolicyError> {
    if len > MAX_POLICY_LEN {
        return Err(ExchangePolicyError::TooLarge {
            len,
            max: MAX_POLICY_LEN,
        });
    }
    Ok(())
}

/// The id of rule `index` and the span of its value, read leniently (only on the error path).
fn toml_rule_id(text: &str, index: usize) -> Option<(String, std::ops::Range<usize>)> {
    #[derive(Deserialize)]
    struct Ids {
        exchange: Vec<IdOnly>,
    }
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<toml::Spanned<String>>,
    }
    let ids = toml::from_str::<Ids>(text).ok()?;
    let id = ids.exchange.into_iter().nth(index)?.id?;
    let span = id.span();
    Some((id.into_inner(), span))
}

fn json_rule_id(text: &str, index: usize) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("exchange")?
        .get(index)?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

/// A rule id fit for an error message: one that the reader would have accepted.
fn printable_id(id: String) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(id)
}

fn from_toml(text: &str) -> Result<Vec<ExchangeRule>, ExchangePolicyError> {
    let progress = Progress::default();
    let result =
        toml::Deserializer::parse(text).and_then(|d| d.deserialize_map(FileSeed(&progress)));
    result.map_err(|e| {
        let message = e.message().trim_end().to_owned();
        let rule = progress.rule.get();
        let found = rule.and_then(|i| toml_rule_id(text, i));
        let span = match (&found, progress.whole_rule.get()) {
            (Some((_, span)), true) => Some(span.clone()),
            _ => e.span().map(|s| refine_to_element(text, s, &message)),
        };
        ExchangePolicyError::Invalid {
            format: Format::Toml,
            position: span.map(|s| Position::of_offset(text, s.start)),
            rule,
            rule_id: found.and_then(|(id, _)| printable_id(id)),
            message,
        }
    })
}

fn from_json(text: &str) -> Result<Vec<ExchangeRule>, ExchangePolicyError> {
    let progress = Progress::default();
    let mut d = serde_json::Deserializer::from_str(text);
    let result = d
        .deserialize_map(FileSeed(&progress))
        .and_then(|rules| d.end().map(|()| rules));
    result.map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        let rule = progress.rule.get();
        ExchangePolicyError::Invalid {
            format: Format::Json,
            position: (line > 0).then_some(Position {
                line,
                column: column.max(1),
            }),
            rule,
            rule_id: rule
                .and_then(|i| json_rule_id(text, i))
                .and_then(printable_id),
            message,
        }
    })
}

impl ExchangePolicy {
    /// Parse and compile an exchange policy from text in `format`.
    pub fn parse(text: &str, format: Format) -> Result<ExchangePolicy, ExchangePolicyError> {
        check_len(text.len())?;
        let rules = match format {
            Format::Toml => from_toml(text)?,
            Format::Json => from_json(text)?,
        };
        Ok(ExchangePolicy::from_rules(rules))
    }

    /// Parse and compile an exchange policy from bytes in `format`; the bytes must be UTF-8.
    pub fn parse_bytes(
        bytes: &[u8],
        format: Format,
    ) -> Result<ExchangePolicy, ExchangePolicyError> {
        check_len(bytes.len())?;
        let text = std::str::from_utf8(bytes).map_err(|e| ExchangePolicyError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        ExchangePolicy::parse(text, format)
    }

    /// Parse and compile a TOML exchange policy.
    pub fn from_toml(text: &str) -> Result<ExchangePolicy, ExchangePolicyError> {
        ExchangePolicy::parse(text, Format::Toml)
    }

    /// Parse and compile a JSON exchange policy.
    pub fn from_json(text: &str) -> Result<ExchangePolicy, ExchangePolicyError> {
        ExchangePolicy::parse(text, Format::Json)
    }
}

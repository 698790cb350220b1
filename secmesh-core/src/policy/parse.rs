//! Loading a policy from TOML or JSON text.
//!
//! Both formats carry the same model: a top-level `rule` array of rule tables, and a `limit`
//! array of rate limits ([`limits`](super::limits)). Unknown fields,
//! duplicate rule ids, invalid patterns (a `**` not last, a partial `*`, an unknown template),
//! unknown effects, modes or classes are rejected with the position in the text
//! ([`PolicyError::position`]). Nothing here reads a file: the caller brings the text.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Format, Policy};
//!
//! let err = Policy::parse(r#"
//! [[rule]]
//! id = "a"
//! effect = "allow"
//! subjects = ["*"]
//! verbs = ["read"]
//! objects = ["a/**/b"]
//! "#, Format::Toml).unwrap_err();
//! let pos = err.position().unwrap();
//! assert_eq!((pos.line, pos.column), (7, 12));
//! assert!(err.to_string().contains("`**` is only allowed as the last segment"));
//!
//! let json = r#"{"rule": [{"id": "a", "effect": "allow", "subjects": ["*"],
//!                "verbs": ["read"], "objects": ["a/*"], "color": "red"}]}"#;
//! let err = Policy::from_json(json).unwrap_err();
//! assert_eq!(err.position().unwrap().line, 2);
//! ```

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::engine::Policy;
use super::limits::{Limit, MAX_LIMITS, Per};
use super::model::{Effect, Mode, Rule, RuleId};
use super::pattern::{Glob, ObjectPattern, VerbPattern};
use crate::class::ExpiryClass;
use crate::limit::Rate;

/// The largest policy text accepted, in bytes.
pub const MAX_POLICY_LEN: usize = 16 << 20;
/// The most rules one policy may hold; a policy with more is refused ("more than 10000 rules
/// in one policy"), with the position of the first rule past the limit.
pub const MAX_RULES: usize = 10_000;
/// The longest rule id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// The most patterns in one list of one rule.
pub const MAX_LIST_LEN: usize = 1024;

const DUPLICATE: &str = "duplicate rule id";

/// The text format of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// TOML: `[[rule]]` tables.
    Toml,
    /// JSON: `{"rule": [ ... ]}`.
    Json,
}

impl Format {
    /// The format for a file extension: `json` is JSON, `toml` is TOML, anything else `None`.
    pub fn from_extension(ext: &str) -> Option<Format> {
        if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if ext.eq_ignore_ascii_case("toml") {
            Some(Format::Toml)
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
        })
    }
}

/// A position in a policy text, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a policy text was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is larger than [`MAX_POLICY_LEN`].
    #[error("policy is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not UTF-8.
    #[error("policy is not UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// The offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not a valid policy.
    #[error("invalid {format} policy{}: {message}", position.map(|p| format!(" at {p}")).unwrap_or_default())]
    Invalid {
        /// The format being read.
        format: Format,
        /// Where in the text, when the parser knows.
        position: Option<Position>,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    /// Where in the text the error is, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            PolicyError::Invalid { position, .. } => *position,
            _ => None,
        }
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> String {
        match self {
            PolicyError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: RuleList,
    #[serde(default)]
    limit: LimitList,
}

/// What a policy text holds, validated.
pub(crate) struct Parsed {
    pub(crate) rules: Vec<Rule>,
    pub(crate) limits: Vec<Limit>,
}

impl From<RawFile> for Parsed {
    fn from(f: RawFile) -> Parsed {
        Parsed {
            rules: f.rule.0,
            limits: f.limit.0,
        }
    }
}

#[derive(Default)]
struct LimitList(Vec<Limit>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    id: RawId,
    rate: RawRate,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    per: Option<RawPer>,
    #[serde(default)]
    subjects: Option<Bounded<Glob>>,
    #[serde(default)]
    callers: Option<Bounded<Glob>>,
    #[serde(default)]
    verbs: Option<Bounded<VerbPattern>>,
    #[serde(default)]
    objects: Option<Bounded<ObjectPattern>>,
    #[serde(default)]
    mode: Mode,
}

/// `rate = "10/s"`.
struct RawRate(Rate);

impl<'de> Deserialize<'de> for RawRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<Rate>().map(RawRate).map_err(|e| {
            serde::de::Error::custom(format_args!("invalid rate `{}`: {e}", s.escape_debug()))
        })
    }
}

/// `per = ["subject", "caller"]`: each at most once.
struct RawPer(Per);

impl<'de> Deserialize<'de> for RawPer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Bounded(names) = Bounded::<String>::deserialize(d)?;
        let mut per = Per::ROUTE;
        for name in names {
            let part = match name.as_str() {
                "subject" => Per::SUBJECT,
                "caller" => Per::CALLER,
                other => {
                    return Err(serde::de::Error::custom(format_args!(
                        "invalid per `{}`: a limit is kept per `subject` and/or `caller`",
                        other.escape_debug()
                    )));
                }
            };
            if per.contains(part) {
                return Err(serde::de::Error::custom(format_args!(
                    "per names `{name}` twice"
                )));
            }
            per = per.and(part);
        }
        Ok(RawPer(per))
    }
}

/// Deserializes one limit and checks its id against the ones before it.
struct LimitSeed<'a> {
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for LimitSeed<'_> {
    type Value = Limit;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Limit, D::Error> {
        let raw = RawLimit::deserialize(d)?;
        if !self.seen.insert(raw.id.0.clone()) {
            return Err(serde::de::Error::custom(format_args!(
                "duplicate limit id `{}`",
                raw.id.0
            )));
        }
        let empty = [
            ("subjects", raw.subjects.as_ref().map(|b| b.0.is_empty())),
            ("callers", raw.callers.as_ref().map(|b| b.0.is_empty())),
            ("verbs", raw.verbs.as_ref().map(|b| b.0.is_empty())),
            ("objects", raw.objects.as_ref().map(|b| b.0.is_empty())),
        ];
        if let Some((name, _)) = empty.iter().find(|(_, e)| *e == Some(true)) {
            return Err(serde::de::Error::custom(format_args!(
                "limit `{}`: an empty `{name}` would match nothing; leave it out to match anything",
                raw.id.0
            )));
        }
        let rate = raw.rate.0;
        let rate = rate
            .burst(raw.burst.unwrap_or(rate.count().min(1_000_000)))
            .map_err(|e| serde::de::Error::custom(format_args!("invalid burst: {e}")))?;
        Ok(Limit {
            id: RuleId::new(&raw.id.0),
            rate,
            per: raw.per.map_or(Per::SUBJECT, |p| p.0),
            subjects: raw.subjects.map(|b| b.0),
            callers: raw.callers.map(|b| b.0),
            verbs: raw.verbs.map(|b| b.0),
            objects: raw.objects.map(|b| b.0),
            mode: raw.mode,
        })
    }
}

impl<'de> Deserialize<'de> for LimitList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LimitList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of limits")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LimitList, A::Error> {
                let mut seen = HashSet::new();
                let mut limits = Vec::new();
                while let Some(limit) = seq.next_element_seed(LimitSeed { seen: &mut seen })? {
                    if limits.len() == MAX_LIMITS {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_LIMITS} limits in one policy"
                        )));
                    }
                    limits.push(limit);
                }
                Ok(LimitList(limits))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Default)]
struct RuleList(Vec<Rule>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: RawId,
    effect: Effect,
    subjects: Bounded<Glob>,
    verbs: Bounded<VerbPattern>,
    objects: Bounded<ObjectPattern>,
    #[serde(default)]
    callers: Option<Bounded<Glob>>,
    #[serde(default)]
    max_class: Option<ExpiryClass>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    mode: Mode,
}

/// `attributes = { role = ["admin", "ops"] }`: names validated like ids, no duplicates.
#[derive(Default)]
struct Attributes(Vec<(Box<str>, Vec<Glob>)>);

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of attribute names to lists of globs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut out: Vec<(Box<str>, Vec<Glob>)> = Vec::new();
                let mut seen = HashSet::new();
                while let Some(RawId(name)) = map.next_key()? {
                    if !seen.insert(name.clone()) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate attribute `{name}`"
                        )));
                    }
                    if out.len() == MAX_LIST_LEN {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_LIST_LEN} attributes"
                        )));
                    }
                    let Bounded(globs) = map.next_value()?;
                    out.push((name.into(), globs));
                }
                Ok(Attributes(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A validated rule id or attribute name: non-empty, no whitespace or control characters, bounded.
pub(crate) struct RawId(pub(crate) String);

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("empty id or name"));
        }
        if s.len() > MAX_ID_LEN {
            return Err(serde::de::Error::custom(format_args!(
                "id or name longer than {MAX_ID_LEN} bytes"
            )));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(serde::de::Error::custom(
                "whitespace or control character in id or name",
            ));
        }
        Ok(RawId(s))
    }
}

/// A list with at most [`MAX_LIST_LEN`] entries.
pub(crate) struct Bounded<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Bounded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Bounded<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element()? {
                    if out.len() == MAX_LIST_LEN {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_LIST_LEN} entries in a list"
                        )));
                    }
                    out.push(x);
                }
                Ok(Bounded(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// Deserializes one rule and checks its id against the ones before it.
struct RuleSeed<'a> {
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for RuleSeed<'_> {
    type Value = Rule;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Rule, D::Error> {
        let raw = RawRule::deserialize(d)?;
        if !self.seen.insert(raw.id.0.clone()) {
            return Err(serde::de::Error::custom(format_args!(
                "{DUPLICATE} `{}`",
                raw.id.0
            )));
        }
        Ok(Rule {
            id: RuleId::new(&raw.id.0),
            effect: raw.effect,
            subjects: raw.subjects.0,
            verbs: raw.verbs.0,
            objects: raw.objects.0,
            callers: raw.callers.map(|c| c.0),
            max_class: raw.max_class,
            attributes: raw.attributes.0,
            mode: raw.mode,
        })
    }
}

impl<'de> Deserialize<'de> for RuleList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RuleList, A::Error> {
                let mut seen = HashSet::new();
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element_seed(RuleSeed { seen: &mut seen })? {
                    if rules.len() == MAX_RULES {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_RULES} rules in one policy"
                        )));
                    }
                    rules.push(rule);
                }
                Ok(RuleList(rules))
            }
        }
        d.deserialize_seq(V)
    }
}

fn check_len(len: usize) -> Result<(), PolicyError> {
    if len > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            len,
            max: MAX_POLICY_LEN,
        });
    }
    Ok(())
}

pub(crate) fn rules_from_toml(text: &str) -> Result<Parsed, PolicyError> {
    check_len(text.len())?;
    toml::from_str::<RawFile>(text)
        .map(Parsed::from)
        .map_err(|e| {
            let message = e.message().trim_end().to_owned();
            let span = if message.starts_with(DUPLICATE) {
                duplicate_id_span(text).or(e.span())
            } else {
                e.span().map(|s| refine_to_element(text, s, &message))
            };
            PolicyError::Invalid {
                format: Format::Toml,
                position: span.map(|s| Position::of_offset(text, s.start)),
                message,
            }
        })
}

/// The TOML deserializer places an error in an array element at the array. For a rejected
/// pattern (the message quotes it: "invalid ... `X`: ..."), point at the string `X` itself
/// when it appears quoted in the array.
pub(crate) fn refine_to_element(
    text: &str,
    span: std::ops::Range<usize>,
    message: &str,
) -> std::ops::Range<usize> {
    let quoted = message
        .strip_prefix("invalid ")
        .and_then(|m| m.split_once('`'))
        .and_then(|(_, rest)| rest.split_once("`: "))
        .map(|(value, _)| value);
    let (Some(value), Some(region)) = (quoted, text.get(span.clone())) else {
        return span;
    };
    for quote in ['"', '\''] {
        let needle = format!("{quote}{value}{quote}");
        if let Some(i) = region.find(&needle) {
            let start = span.start + i;
            return start..start + needle.len();
        }
    }
    span
}

/// The TOML deserializer places an error raised between array elements at the array; for a
/// duplicate id, find the second occurrence's own span.
fn duplicate_id_span(text: &str) -> Option<std::ops::Range<usize>> {
    #[derive(Deserialize)]
    struct Ids {
        rule: Vec<IdOnly>,
    }
    #[derive(Deserialize)]
    struct IdOnly {
        id: toml::Spanned<String>,
    }
    let ids = toml::from_str::<Ids>(text).ok()?;
    let mut seen = HashSet::new();
    ids.rule
        .iter()
        .find(|r| !seen.insert(r.id.get_ref().as_str()))
        .map(|r| r.id.span())
}

pub(crate) fn rules_from_json(text: &str) -> Result<Parsed, PolicyError> {
    check_len(text.len())?;
    serde_json::from_str::<RawFile>(text)
        .map(Parsed::from)
        .map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let full = e.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
            PolicyError::Invalid {
                format: Format::Json,
                position: (line > 0).then_some(Position {
                    line,
                    column: column.max(1),
                }),
                message,
            }
        })
}

impl Policy {
    /// Parse and compile a policy from text in `format`.
    pub fn parse(text: &str, format: Format) -> Result<Policy, PolicyError> {
        let parsed = match format {
            Format::Toml => rules_from_toml(text)?,
            Format::Json => rules_from_json(text)?,
        };
        Ok(Policy::from_rules(parsed.rules).with_limits(parsed.limits))
    }

    /// Parse and compile a policy from bytes in `format`; the bytes must be UTF-8.
    pub fn parse_bytes(bytes: &[u8], format: Format) -> Result<Policy, PolicyError> {
        check_len(bytes.len())?;
        let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        Policy::parse(text, format)
    }

    /// Parse and compile a TOML policy.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Format::Toml)
    }

    /// Parse and compile a JSON policy.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Format::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[rule]]
id = "owners-read-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/{sub}/**"]
callers = ["spiffe://mesh.test/gateway"]
max_class = "fast"

[[rule]]
id = "no-deletes"
effect = "deny"
subjects = ["*"]
verbs = ["delete"]
objects = ["**"]
mode = "shadow"
"#;

    fn toml_err(text: &str) -> PolicyError {
        Policy::from_toml(text).unwrap_err()
    }

    fn rule_with(extra: &str) -> String {
        format!(
            "[[rule]]\nid = \"a\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"a\"]\n{extra}\n"
        )
    }

    #[test]
    fn good_toml() {
        let p = Policy::from_toml(GOOD).unwrap();
        assert_eq!(p.rules().len(), 2);
        let r = &p.rules()[0];
        assert_eq!(r.id(), "owners-read-own-orders");
        assert_eq!(r.max_class(), Some(ExpiryClass::Fast));
        assert_eq!(
            r.callers().unwrap()[0].as_str(),
            "spiffe://mesh.test/gateway"
        );
        assert_eq!(r.mode(), Mode::Enforce);
        assert_eq!(p.rules()[1].mode(), Mode::Shadow);
        assert_eq!(p.rules()[1].effect(), Effect::Deny);
    }

    #[test]
    fn same_model_in_json() {
        let json = r#"{"rule": [
          {"id": "owners-read-own-orders", "effect": "allow", "subjects": ["user:*"],
           "verbs": ["read"], "objects": ["orders/{sub}/**"],
           "callers": ["spiffe://mesh.test/gateway"], "max_class": "fast"},
          {"id": "no-deletes", "effect": "deny", "subjects": ["*"], "verbs": ["delete"],
           "objects": ["**"], "mode": "shadow"}
        ]}"#;
        assert_eq!(
            Policy::from_json(json).unwrap().rules(),
            Policy::from_toml(GOOD).unwrap().rules()
        );
    }

    #[test]
    fn empty_policy() {
        assert!(Policy::from_toml("").unwrap().rules().is_empty());
        assert!(Policy::from_json("{}").unwrap().rules().is_empty());
        assert!(
            Policy::from_json("{\"rule\": []}")
                .unwrap()
                .rules()
                .is_empty()
        );
    }

    #[test]
    fn unknown_field_has_position() {
        let e = toml_err(&rule_with("colour = \"red\""));
        assert_eq!(e.position(), Some(Position { line: 7, column: 1 }));
        assert!(e.message().contains("colour"), "{e}");
        let e = toml_err("version = 2\n");
        assert_eq!(e.position().unwrap().line, 1);
    }

    #[test]
    fn bad_class_has_position() {
        let e = toml_err(&rule_with("max_class = \"sometimes\""));
        assert_eq!(
            e.position(),
            Some(Position {
                line: 7,
                column: 13
            })
        );
        assert!(e.message().contains("sometimes"), "{e}");
    }

    #[test]
    fn bad_effect_and_mode() {
        let e = toml_err(&rule_with("mode = \"dry\""));
        assert_eq!(e.position().unwrap().line, 7);
        let e = toml_err("[[rule]]\nid = \"a\"\neffect = \"maybe\"\n");
        assert_eq!(e.position().unwrap().line, 3);
    }

    #[test]
    fn missing_field() {
        let e = toml_err("[[rule]]\nid = \"a\"\neffect = \"allow\"\n");
        assert!(e.message().contains("subjects"), "{e}");
        assert!(e.position().is_some());
    }

    #[test]
    fn bad_patterns_have_position() {
        let e = toml_err(&rule_with("callers = [\"a b\"]"));
        assert_eq!(e.position().unwrap().line, 7);
        let text = rule_with("").replace("objects = [\"a\"]", "objects = [\"a\", \"**/x\"]");
        let e = toml_err(&text);
        assert_eq!(
            e.position(),
            Some(Position {
                line: 6,
                column: 17
            })
        );
        let text = rule_with("").replace("verbs = [\"read\"]", "verbs = [\"re:ad\"]");
        assert_eq!(toml_err(&text).position().unwrap().line, 5);
    }

    #[test]
    fn duplicate_ids() {
        let text = format!("{}{}", rule_with(""), rule_with(""));
        let e = toml_err(&text);
        assert!(e.message().contains("duplicate rule id `a`"), "{e}");
        assert_eq!(e.position(), Some(Position { line: 9, column: 6 }));
        let json = r#"{"rule": [
{"id": "a", "effect": "allow", "subjects": ["*"], "verbs": ["*"], "objects": ["**"]},
{"id": "a", "effect": "allow", "subjects": ["*"], "verbs": ["*"], "objects": ["**"]}
]}"#;
        let e = Policy::from_json(json).unwrap_err();
        assert!(e.message().contains("duplicate"), "{e}");
        // serde_json places it just after the duplicate rule.
        assert!((3..=4).contains(&e.position().unwrap().line), "{e}");
    }

    #[test]
    fn bad_ids() {
        assert!(
            toml_err(&rule_with("").replace("\"a\"\neffect", "\"\"\neffect"))
                .message()
                .contains("empty")
        );
        assert!(
            Policy::from_toml(&rule_with("").replace("\"a\"\neffect", "\"a b\"\neffect")).is_err()
        );
    }

    #[test]
    fn json_errors() {
        let e = Policy::from_json("{\"rule\": [1]}").unwrap_err();
        assert_eq!(e.position().unwrap().line, 1);
        assert!(!e.message().contains(" at line "));
        let e = Policy::from_json("").unwrap_err();
        assert!(matches!(
            e,
            PolicyError::Invalid {
                format: Format::Json,
                ..
            }
        ));
        assert!(Policy::from_json("{\"rule\": []} x").is_err());
    }

    #[test]
    fn limits() {
        let big = " ".repeat(MAX_POLICY_LEN + 1);
        assert!(matches!(
            Policy::from_toml(&big),
            Err(PolicyError::TooLarge { .. })
        ));
        assert!(matches!(
            Policy::parse_bytes(b"\xff", Format::Toml),
            Err(PolicyError::NotUtf8 { offset: 0 })
        ));
        let list = vec!["\"a\""; MAX_LIST_LEN + 1].join(",");
        let text = rule_with("").replace("subjects = [\"*\"]", &format!("subjects = [{list}]"));
        assert!(toml_err(&text).message().contains("more than"));
    }

    #[test]
    fn rule_count_is_bounded() {
        let rules = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    format!("[[rule]]\nid = \"r{i}\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"a/{i}\"]\n")
                })
                .collect()
        };
        assert_eq!(
            Policy::from_toml(&rules(MAX_RULES)).unwrap().rules().len(),
            MAX_RULES
        );
        for n in [MAX_RULES + 1, MAX_RULES + 500] {
            let e = toml_err(&rules(n));
            assert!(
                e.message().contains("more than 10000 rules in one policy"),
                "{e}"
            );
            assert!(e.position().is_some(), "{e}");
        }
        let json = |n: usize| -> String {
            let one: Vec<String> = (0..n)
                .map(|i| {
                    format!(r#"{{"id":"r{i}","effect":"deny","subjects":["*"],"verbs":["*"],"objects":["a/{i}"]}}"#)
                })
                .collect();
            format!(r#"{{"rule":[{}]}}"#, one.join(","))
        };
        assert_eq!(
            Policy::from_json(&json(MAX_RULES)).unwrap().rules().len(),
            MAX_RULES
        );
        let e = Policy::from_json(&json(MAX_RULES + 1)).unwrap_err();
        assert!(e.message().contains("more than 10000 rules"), "{e}");
    }

    #[test]
    fn attributes() {
        let p = Policy::from_toml(&rule_with(
            "attributes = { role = [\"ops*\", \"admin\"], team = [] }",
        ))
        .unwrap();
        let attrs: Vec<_> = p.rules()[0].attributes().collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].0, "role");
        assert_eq!(attrs[0].1[0].as_str(), "ops*");
        let sub = Policy::from_toml(&rule_with("[rule.attributes]\nrole = [\"ops\"]")).unwrap();
        assert_eq!(sub.rules()[0].attributes().count(), 1);
        let e = toml_err(&rule_with("attributes = { \"a b\" = [\"x\"] }"));
        assert_eq!(e.position().unwrap().line, 7);
        let e = toml_err(&rule_with("attributes = { role = \"admin\" }"));
        assert_eq!(e.position().unwrap().line, 7);
        let json = r#"{"rule": [{"id": "a", "effect": "allow", "subjects": ["*"], "verbs": ["*"],
            "objects": ["**"], "attributes": {"role": ["x"], "role": ["y"]}}]}"#;
        let e = Policy::from_json(json).unwrap_err();
        assert!(e.message().contains("duplicate attribute `role`"), "{e}");
    }

    #[test]
    fn positions() {
        assert_eq!(
            Position::of_offset("ab\ncd", 4),
            Position { line: 2, column: 2 }
        );
        assert_eq!(
            Position::of_offset("é\nx", 1),
            Position { line: 1, column: 1 }
        );
        assert_eq!(Position::of_offset("", 9), Position { line: 1, column: 1 });
        assert_eq!(Format::from_extension("JSON"), Some(Format::Json));
        assert_eq!(Format::from_extension("yaml"), None);
    }
}

//! Patterns: globs for subjects and callers, verb patterns, and segment patterns for objects.
//!
//! - A [`Glob`] matches a whole string; `*` matches any run of characters (possibly empty) and
//!   every other character matches itself.
//! - A [`VerbPattern`] is an exact verb or `*` for any verb.
//! - An [`ObjectPattern`] is a `/`-separated list of segments: a literal segment matches itself,
//!   `*` matches exactly one non-empty segment, `**` (only as the last segment) matches zero or
//!   more segments, and `{sub}` is replaced by the request's subject, taken literally, before
//!   matching (`orders/{sub}/**`).
//!
//! # Example
//! ```
//! use secmesh_core::policy::pattern::{Glob, ObjectPattern};
//!
//! let g: Glob = "user:*".parse().unwrap();
//! assert!(g.matches("user:alice"));
//! assert!(!g.matches("svc:orders"));
//!
//! let p: ObjectPattern = "orders/{sub}/**".parse().unwrap();
//! assert!(p.matches("orders/user:alice", "user:alice"));
//! assert!(p.matches("orders/user:alice/42/items", "user:alice"));
//! assert!(!p.matches("orders/user:bob/42", "user:alice"));
//! assert!("orders/**/items".parse::<ObjectPattern>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::svo::Verb;

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Why a pattern was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// An empty pattern.
    #[error("empty pattern")]
    Empty,
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("pattern longer than {MAX_PATTERN_LEN} bytes")]
    TooLong,
    /// Whitespace or a control character.
    #[error("whitespace or control character in pattern")]
    InvalidChar,
    /// An empty object segment: a leading, trailing or doubled `/`.
    #[error("empty segment in object pattern (no leading, trailing or doubled '/')")]
    EmptySegment,
    /// `**` anywhere but as the last segment.
    #[error("`**` is only allowed as the last segment")]
    DoubleStarNotLast,
    /// `*` inside a segment with other characters (`ab*`).
    #[error("`*` must be a whole segment (`*` or `**`)")]
    PartialWildcard,
    /// A `{` or `}` that is not part of `{sub}`.
    #[error("unknown template (only `{{sub}}` is supported)")]
    UnknownTemplate,
    /// A verb that is not `*` and not a valid verb (empty, whitespace, `:`).
    #[error("invalid verb")]
    InvalidVerb,
}

fn check_text(s: &str) -> Result<(), PatternError> {
    if s.is_empty() {
        return Err(PatternError::Empty);
    }
    if s.len() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong);
    }
    // Printable ASCII (the usual case) has no whitespace or control character.
    if !s.bytes().all(|b| (0x21..0x7f).contains(&b))
        && s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(PatternError::InvalidChar);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GlobKind {
    /// `*`.
    Any,
    /// No `*` at all.
    Exact,
    /// `prefix*`.
    Prefix,
    /// `*suffix`.
    Suffix,
    /// Anything else.
    General,
}

/// A glob over a whole string: `*` matches any run of characters, possibly empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Glob {
    text: Box<str>,
    kind: GlobKind,
}

impl Glob {
    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the glob matches all of `s`.
    pub fn matches(&self, s: &str) -> bool {
        let t = &*self.text;
        match self.kind {
            GlobKind::Any => true,
            GlobKind::Exact => t == s,
            GlobKind::Prefix => s.starts_with(&t[..t.len() - 1]),
            GlobKind::Suffix => s.ends_with(&t[1..]),
            GlobKind::General => glob_general(t, s),
        }
    }

    /// The one string this glob matches, when it has no `*`.
    pub(crate) fn exact(&self) -> Option<&str> {
        (self.kind == GlobKind::Exact).then_some(&*self.text)
    }

    /// The literal text before the first `*`.
    fn head(&self) -> &str {
        self.text.split('*').next().unwrap_or("")
    }

    /// The literal text after the last `*`.
    fn tail(&self) -> &str {
        self.text.rsplit('*').next().unwrap_or("")
    }

    /// Whether every string this glob's `other` matches is matched by `self`. Conservative: a
    /// `false` may be a missed inclusion, a `true` never is wrong.
    pub fn covers(&self, other: &Glob) -> bool {
        if other.kind == GlobKind::Exact {
            // `other` matches exactly one string.
            return self.matches(&other.text);
        }
        match self.kind {
            GlobKind::Any => true,
            GlobKind::Exact | GlobKind::General => self.text == other.text,
            GlobKind::Prefix => {
                let p = &self.text[..self.text.len() - 1];
                match other.kind {
                    GlobKind::Exact => other.text.starts_with(p),
                    _ => other.head().starts_with(p),
                }
            }
            GlobKind::Suffix => {
                let sfx = &self.text[1..];
                match other.kind {
                    GlobKind::Exact => other.text.ends_with(sfx),
                    _ => other.tail().ends_with(sfx),
                }
            }
        }
    }
}

/// Glob matching for patterns with `*` in the middle: the first part is a prefix, the last a
/// suffix, and the middle parts are found leftmost in order (optimal for `*`-only globs).
fn glob_general(pattern: &str, s: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let mut middle: Vec<&str> = parts.collect();
    let last = middle.pop().unwrap_or("");
    if rest.len() < last.len() {
        return false;
    }
    let Some(body) = rest.get(..rest.len() - last.len()) else {
        return false;
    };
    if !rest.ends_with(last) {
        return false;
    }
    rest = body;
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl FromStr for Glob {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_text(s)?;
        let stars = s.matches('*').count();
        let kind = if s == "*" {
            GlobKind::Any
        } else if stars == 0 {
            GlobKind::Exact
        } else if stars == 1 && s.ends_with('*') {
            GlobKind::Prefix
        } else if stars == 1 && s.starts_with('*') {
            GlobKind::Suffix
        } else {
            GlobKind::General
        };
        Ok(Glob {
            text: s.into(),
            kind,
        })
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A verb pattern: one verb, or `*` for any.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VerbPattern {
    /// `*`: any verb.
    Any,
    /// Exactly this verb.
    Exact(Box<str>),
}

impl VerbPattern {
    /// Whether the pattern matches the verb named `verb`.
    pub fn matches(&self, verb: &str) -> bool {
        match self {
            VerbPattern::Any => true,
            VerbPattern::Exact(v) => **v == *verb,
        }
    }

    /// Whether every verb `other` matches is matched by `self`.
    pub fn covers(&self, other: &VerbPattern) -> bool {
        match (self, other) {
            (VerbPattern::Any, _) => true,
            (VerbPattern::Exact(a), VerbPattern::Exact(b)) => a == b,
            (VerbPattern::Exact(_), VerbPattern::Any) => false,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            VerbPattern::Any => "*",
            VerbPattern::Exact(v) => v,
        }
    }
}

impl FromStr for VerbPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(VerbPattern::Any);
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        let v: Verb = s.parse().map_err(|_| PatternError::InvalidVerb)?;
        Ok(VerbPattern::Exact(v.as_str().into()))
    }
}

impl fmt::Display for VerbPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment of an object pattern, read from the pattern's text (a validated pattern is
/// only its text: no allocation per segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment<'a> {
    /// Matches itself.
    Literal(&'a str),
    /// `*`: one non-empty segment.
    One,
    /// `**`: zero or more segments (last only).
    Rest,
    /// Literal text with `{sub}` in it.
    Template(&'a str),
}

impl<'a> Segment<'a> {
    /// The segment `seg` of a validated pattern.
    fn of(seg: &'a str) -> Segment<'a> {
        match seg {
            "*" => Segment::One,
            "**" => Segment::Rest,
            _ if seg.contains('{') => Segment::Template(seg),
            _ => Segment::Literal(seg),
        }
    }
}

/// Match the template segment `tpl` (literal text and `{sub}`) at the start of `rest`, with
/// `{sub}` standing for `subject`; what is left of `rest` after it.
fn strip_template<'r>(mut tpl: &str, mut rest: &'r str, subject: &str) -> Option<&'r str> {
    loop {
        match tpl.find("{sub}") {
            Some(i) => {
                rest = rest.strip_prefix(&tpl[..i])?.strip_prefix(subject)?;
                tpl = &tpl[i + "{sub}".len()..];
            }
            None => return rest.strip_prefix(tpl),
        }
    }
}

/// An object pattern: `/`-separated segments of literals, `*`, a trailing `**` and `{sub}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectPattern {
    text: Box<str>,
}

impl ObjectPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn segments(&self) -> impl Iterator<Item = Segment<'_>> + Clone {
        self.text.split('/').map(Segment::of)
    }

    /// The leading literal segments, up to the first `*`, `**` or `{sub}` segment.
    pub(crate) fn literal_prefix(&self) -> impl Iterator<Item = &str> {
        self.segments().map_while(|s| match s {
            Segment::Literal(l) => Some(l),
            _ => None,
        })
    }

    /// Whether the pattern uses `{sub}`.
    pub fn has_template(&self) -> bool {
        self.text.contains('{')
    }

    /// Whether the pattern matches `object` (a valid object: no leading `/`, no empty
    /// segment), with `{sub}` standing for `subject`.
    pub fn matches(&self, object: &str, subject: &str) -> bool {
        // `rest` is what is left of the object; "" means no segments left.
        let mut rest = object;
        let mut segments = self.segments().peekable();
        while let Some(seg) = segments.next() {
            let after = match seg {
                Segment::Rest => return true,
                _ if rest.is_empty() => return false,
                Segment::Literal(l) => match rest.strip_prefix(l) {
                    Some(r) => r,
                    None => return false,
                },
                Segment::One => match rest.find('/') {
                    Some(0) => return false,
                    Some(j) => &rest[j..],
                    None => "",
                },
                Segment::Template(t) => match strip_template(t, rest, subject) {
                    Some(r) => r,
                    None => return false,
                },
            };
            // A segment must end at a boundary: the end of the object or a '/'.
            if after.is_empty() {
                // Only a trailing `**` can match the nothing that is left (`**` is always
                // last in a valid pattern).
                return matches!(segments.peek(), None | Some(Segment::Rest));
            }
            match after.strip_prefix('/') {
                Some(r) => rest = r,
                None => return false,
            }
        }
        // Every segment matched and object segments are left over.
        false
    }

    /// Whether every object (for every subject) `other` matches is matched by `self`.
    /// Conservative: a `false` may be a missed inclusion, a `true` is never wrong.
    pub fn covers(&self, other: &ObjectPattern) -> bool {
        let mut theirs = other.segments();
        for mine in self.segments() {
            if mine == Segment::Rest {
                return true;
            }
            let Some(t) = theirs.next() else {
                return false;
            };
            let ok = match (mine, t) {
                (Segment::One, Segment::Literal(_) | Segment::One) => true,
                (a, b) => a == b && b != Segment::Rest,
            };
            if !ok {
                return false;
            }
        }
        theirs.next().is_none()
    }
}

/// Check one segment of an object pattern; whether it is `**`.
fn check_segment(seg: &[u8]) -> Result<bool, PatternError> {
    match seg {
        b"" => return Err(PatternError::EmptySegment),
        b"*" => return Ok(false),
        b"**" => return Ok(true),
        _ => {}
    }
    let (mut star, mut brace) = (false, false);
    for &c in seg {
        star |= c == b'*';
        brace |= c == b'{' || c == b'}';
    }
    if star {
        return Err(PatternError::PartialWildcard);
    }
    // Every `{` or `}` must be part of a `{sub}`.
    let mut rest = seg;
    while brace && let Some(i) = rest.iter().position(|&c| c == b'{' || c == b'}') {
        match rest[i..].strip_prefix(b"{sub}") {
            Some(r) => rest = r,
            None => return Err(PatternError::UnknownTemplate),
        }
    }
    Ok(false)
}

impl FromStr for ObjectPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_text(s)?;
        // Every segment is checked first (its error wins), then the place of `**`.
        let mut first_rest = None;
        let mut count = 0;
        for seg in s.as_bytes().split(|&c| c == b'/') {
            if check_segment(seg)? && first_rest.is_none() {
                first_rest = Some(count);
            }
            count += 1;
        }
        if let Some(i) = first_rest
            && i + 1 != count
        {
            return Err(PatternError::DoubleStarNotLast);
        }
        Ok(ObjectPattern { text: s.into() })
    }
}

impl fmt::Display for ObjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

macro_rules! deserialize_from_str {
    ($t:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(|e: PatternError| {
                    serde::de::Error::custom(format_args!(concat!($what, " `{}`: {}"), s, e))
                })
            }
        }
    };
}

deserialize_from_str!(Glob, "invalid glob");
deserialize_from_str!(VerbPattern, "invalid verb");
deserialize_from_str!(ObjectPattern, "invalid object pattern");

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Glob {
        s.parse().unwrap()
    }

    fn p(s: &str) -> ObjectPattern {
        s.parse().unwrap()
    }

    #[test]
    fn globs() {
        assert!(g("*").matches(""));
        assert!(g("user:*").matches("user:"));
        assert!(g("user:*").matches("user:alice"));
        assert!(!g("user:*").matches("usr:alice"));
        assert!(g("*:alice").matches("user:alice"));
        assert!(g("a*b*c").matches("abc"));
        assert!(g("a*b*c").matches("axxbyyc"));
        assert!(!g("a*b*c").matches("axxbyy"));
        assert!(!g("a*a").matches("a"));
        assert!(g("a*a").matches("aa"));
        assert!(g("*a*").matches("bab"));
        assert!(g("**").matches(""));
        assert!(g("exact").matches("exact"));
        assert!(!g("exact").matches("exact2"));
        assert_eq!("".parse::<Glob>(), Err(PatternError::Empty));
        assert_eq!("a b".parse::<Glob>(), Err(PatternError::InvalidChar));
    }

    #[test]
    fn glob_cover() {
        assert!(g("*").covers(&g("a*b")));
        assert!(g("user:*").covers(&g("user:a*")));
        assert!(g("user:*").covers(&g("user:alice")));
        assert!(!g("user:*").covers(&g("*")));
        assert!(!g("user:alice").covers(&g("user:*")));
        assert!(g("*.test").covers(&g("*a.test")));
        assert!(g("a*b*c").covers(&g("axbyc")));
        assert!(!g("a*b*c").covers(&g("axbyd")));
        assert!(!g("a*b*c").covers(&g("a*c")));
    }

    #[test]
    fn objects() {
        assert!(p("orders/*").matches("orders/42", "s"));
        assert!(!p("orders/*").matches("orders", "s"));
        assert!(!p("orders/*").matches("orders/42/x", "s"));
        assert!(p("orders/**").matches("orders", "s"));
        assert!(p("orders/**").matches("orders/1/2/3", "s"));
        assert!(!p("orders/**").matches("ordersx", "s"));
        assert!(!p("orders/**").matches("order", "s"));
        assert!(p("**").matches("", "s"));
        assert!(p("**").matches("a/b", "s"));
        assert!(!p("*").matches("", "s"));
        assert!(!p("a").matches("", "s"));
        assert!(p("a").matches("a", "s"));
        assert!(!p("a").matches("ab", "s"));
        assert!(!p("a/b").matches("a", "s"));
        assert!(p("*/b/*").matches("x/b/y", "s"));
        assert!(p("u/{sub}").matches("u/alice", "alice"));
        assert!(!p("u/{sub}").matches("u/alice", "bob"));
        assert!(p("u/x-{sub}-y").matches("u/x-al-y", "al"));
        // The subject is taken literally, even with '/' or '*' in it.
        assert!(p("u/{sub}/**").matches("u/a/b/c", "a/b"));
        assert!(!p("u/{sub}").matches("u/anything", "*"));
        assert!(p("u/{sub}").matches("u/*", "*"));
        assert!(!p("u/{sub}").matches("u/a", ""));
    }

    #[test]
    fn object_errors() {
        assert_eq!(
            "a/**/b".parse::<ObjectPattern>(),
            Err(PatternError::DoubleStarNotLast)
        );
        assert_eq!(
            "**/**".parse::<ObjectPattern>(),
            Err(PatternError::DoubleStarNotLast)
        );
        assert_eq!(
            "/a".parse::<ObjectPattern>(),
            Err(PatternError::EmptySegment)
        );
        assert_eq!(
            "a/".parse::<ObjectPattern>(),
            Err(PatternError::EmptySegment)
        );
        assert_eq!(
            "a*".parse::<ObjectPattern>(),
            Err(PatternError::PartialWildcard)
        );
        assert_eq!(
            "{user}".parse::<ObjectPattern>(),
            Err(PatternError::UnknownTemplate)
        );
        assert_eq!(
            "a{sub".parse::<ObjectPattern>(),
            Err(PatternError::UnknownTemplate)
        );
        assert_eq!("".parse::<ObjectPattern>(), Err(PatternError::Empty));
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(long.parse::<ObjectPattern>(), Err(PatternError::TooLong));
    }

    #[test]
    fn object_cover() {
        assert!(p("**").covers(&p("a/b")));
        assert!(p("a/**").covers(&p("a/*/c/**")));
        assert!(p("a/*").covers(&p("a/b")));
        assert!(!p("a/*").covers(&p("a/{sub}")));
        assert!(p("a/{sub}").covers(&p("a/{sub}")));
        assert!(!p("a/*").covers(&p("a/**")));
        assert!(!p("a/b").covers(&p("a/b/c")));
        assert!(!p("a/b/c").covers(&p("a/b")));
    }

    #[test]
    fn verbs() {
        assert_eq!("*".parse::<VerbPattern>(), Ok(VerbPattern::Any));
        assert!("read".parse::<VerbPattern>().unwrap().matches("read"));
        assert!(!"read".parse::<VerbPattern>().unwrap().matches("update"));
        assert_eq!("a:b".parse::<VerbPattern>(), Err(PatternError::InvalidVerb));
        assert_eq!("".parse::<VerbPattern>(), Err(PatternError::InvalidVerb));
    }
}

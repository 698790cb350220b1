//! The common access-control language: a subject performs a verb on an object.
//!
//! Subjects are token subjects such as `user:alice` or `spiffe://mesh.test/orders`. Verbs are
//! the four HTTP-derived verbs (`read`, `create`, `update`, `delete`) or any custom word.
//! Objects are `/`-separated paths without a leading `/`, e.g. `orders/42`.
//!
//! # The canonical object of a request path
//! [`Object::from_path`] defines the one object a request acts on; the policy decides on it,
//! the audit event records it, and it is exactly what a handler's path extractor (axum's
//! `Path`, which percent-decodes each segment once) yields for each segment. The rules:
//!
//! - the path must start with `/`; the leading `/` and **one** trailing `/` are dropped
//!   (`/orders/42/` is `orders/42`); `/` alone is the root (the empty object);
//! - the path is split on `/` **before** decoding, then each segment is percent-decoded
//!   **once**; an invalid escape (`%zz`, `%4`) or bytes that are not UTF-8 are refused;
//! - an empty segment (`a//b`, or a second trailing `/`) is refused;
//! - a decoded segment that is `.` or `..`, or that contains `/` or `\`, NUL or any other
//!   control character, whitespace, or a bidirectional or zero-width formatting character
//!   is refused;
//! - a decoded segment that still contains `%` is refused: it was encoded twice (`%252F`), and
//!   a downstream that decodes again would act on yet another object;
//! - `;` (path parameters, raw or encoded) is refused: some servers strip `;...` from a
//!   segment and some do not, so the object would depend on who reads it;
//! - `?` and `#` may not appear decoded in a segment (they change meaning if the segment is
//!   ever put back into a URL).
//!
//! A refused path is a bad request (400), never a guess. gRPC method paths have their own,
//! stricter grammar: [`Object::from_grpc_path`].
//!
//! # Example
//! ```
//! use secmesh_core::svo::{Object, Verb};
//!
//! assert_eq!(Verb::from_method("GET"), Some(Verb::Read));
//! assert_eq!("approve".parse::<Verb>().unwrap().as_str(), "approve");
//! assert_eq!(Object::from_path("/orders/42/").unwrap().as_str(), "orders/42");
//! assert!(Object::from_path("/orders//42").is_err());
//! assert_eq!(Object::from_path("/files/user%3Aalice/r%C3%A9sum%C3%A9").unwrap().as_str(),
//!            "files/user:alice/résumé");
//! // Encoded separators and dot segments, once or twice encoded, are refused.
//! for bad in ["/orders/x%2F..%2F..%2Fuser:bob", "/orders/%2e%2e/admin", "/a/%252F", "/a/b;v=1"] {
//!     assert!(Object::from_path(bad).is_err(), "{bad}");
//! }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Why a subject, verb or object was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvoError {
    /// Empty where a value is required.
    #[error("empty")]
    Empty,
    /// A character that is not allowed here (whitespace, control characters, or `:` in a verb).
    #[error("invalid character")]
    InvalidChar,
    /// An object with an empty segment (`a//b`).
    #[error("empty path segment")]
    EmptySegment,
    /// A path that does not start with `/`.
    #[error("the path is not absolute")]
    NotAbsolute,
    /// An invalid percent escape, or bytes that are not UTF-8 once decoded.
    #[error("invalid percent-encoding or not UTF-8")]
    Encoding,
    /// A segment that decodes to `/` or `\` inside it.
    #[error("an encoded path separator")]
    EncodedSeparator,
    /// A segment that is (or decodes to) `.` or `..`.
    #[error("a dot segment")]
    DotSegment,
    /// A segment that still holds a percent escape after decoding once.
    #[error("a doubly encoded segment")]
    DoubleEncoded,
    /// A `;` path parameter.
    #[error("a path parameter (`;`)")]
    Parameter,
    /// Too long: over [`MAX_IDENTIFIER`] bytes for an identifier, [`MAX_OBJECT`] for an object.
    #[error("too long")]
    TooLong,
    /// Not a gRPC method path (`/package.Service/Method`).
    #[error("not a gRPC method path")]
    NotGrpcMethod,
}

/// The longest identifier (subject, issuer, actor, workload, audience, transaction id) in
/// bytes.
pub const MAX_IDENTIFIER: usize = 1024;

/// The longest object in bytes (a request path decodes to at most this). The limit is on the
/// decoded object, so whether a path is refused as too long does not depend on how it was
/// encoded; the raw path is bounded too, at three times this (every byte encoded), before any
/// decoding work.
pub const MAX_OBJECT: usize = 8192;

/// The longest raw request path [`Object::from_path`] reads: [`MAX_OBJECT`] bytes, each
/// percent-encoded.
const MAX_RAW_PATH: usize = 3 * MAX_OBJECT;

/// Characters that are never part of an identifier or object: whitespace, control characters
/// (C0, DEL, C1), and the bidirectional and zero-width formatting characters that make a
/// printed name differ from the bytes compared.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Check an identifier that reaches the policy or the logs (a token's `sub`, `iss`, `aud`,
/// actors, `req_wl`): non-empty, at most [`MAX_IDENTIFIER`] bytes, and no
/// [forbidden character](is_forbidden_char).
pub fn check_identifier(s: &str) -> Result<(), SvoError> {
    if s.is_empty() {
        return Err(SvoError::Empty);
    }
    if s.len() > MAX_IDENTIFIER {
        return Err(SvoError::TooLong);
    }
    if !is_plain_ascii(s) && s.chars().any(is_forbidden_char) {
        return Err(SvoError::InvalidChar);
    }
    Ok(())
}

/// Whether `s` is printable ASCII only (no space): then it has no
/// [forbidden character](is_forbidden_char), without decoding a char.
pub(crate) fn is_plain_ascii(s: &str) -> bool {
    // 16 bytes at a time without an early exit inside a block, so that the test vectorises.
    s.as_bytes().chunks(16).all(|block| {
        block
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x7f - 0x21))
    })
}

/// The verb the built-in gRPC classifier gives every call (the object is the method,
/// `package.Service/Method`).
pub const GRPC_VERB: &str = "call";

/// The verbs the built-in classifiers produce: `read`, `create`, `update` and `delete` from
/// HTTP methods ([`Verb::from_http_method`]) and [`GRPC_VERB`] for gRPC. A policy verb outside
/// this set matches only the requests of a custom classifier; `secmesh policy lint` warns
/// about it.
pub const CLASSIFIED_VERBS: [&str; 5] = ["read", "create", "update", "delete", GRPC_VERB];

/// What a request does.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Verb {
    /// GET and HEAD.
    Read,
    /// POST.
    Create,
    /// PUT and PATCH.
    Update,
    /// DELETE.
    Delete,
    /// Any other verb, e.g. a gRPC method's own word or `approve`.
    Other(Arc<str>),
}

impl Verb {
    /// The verb's name.
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Read => "read",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Other(s) => s,
        }
    }

    /// The default mapping from an HTTP method: GET/HEAD read, POST create, PUT/PATCH update,
    /// DELETE delete; `None` for any other method.
    pub fn from_method(method: &str) -> Option<Verb> {
        match method {
            "GET" | "HEAD" => Some(Verb::Read),
            "POST" => Some(Verb::Create),
            "PUT" | "PATCH" => Some(Verb::Update),
            "DELETE" => Some(Verb::Delete),
            _ => None,
        }
    }
}

impl Verb {
    /// The verb of an HTTP method as the built-in HTTP classifier maps it: GET, HEAD and
    /// OPTIONS `read`, POST `create`, PUT and PATCH `update`, DELETE `delete`; `None` for
    /// every other method (the classifier refuses those).
    pub fn from_http_method(method: &str) -> Option<Verb> {
        match method {
            "OPTIONS" => Some(Verb::Read),
            m => Verb::from_method(m),
        }
    }

    /// The verb of every gRPC call: [`GRPC_VERB`].
    pub fn grpc_call() -> Verb {
        Verb::Other(Arc::from(GRPC_VERB))
    }

    /// Whether a built-in classifier produces this verb ([`CLASSIFIED_VERBS`]).
    pub fn is_classified(&self) -> bool {
        CLASSIFIED_VERBS.contains(&self.as_str())
    }
}

impl FromStr for Verb {
    type Err = SvoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "read" => Verb::Read,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "delete" => Verb::Delete,
            "" => return Err(SvoError::Empty),
            s if s
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control()) =>
            {
                return Err(SvoError::InvalidChar);
            }
            s => Verb::Other(Arc::from(s)),
        })
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request acts on: `/`-separated segments, no leading `/`, no empty segment.
/// The empty object stands for the root.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Object(String);

impl Object {
    /// The canonical object of a request path (the query string already removed): see the
    /// [module docs](self) for the rules. A refused path is an error, never a guess.
    pub fn from_path(path: &str) -> Result<Object, SvoError> {
        let p = path.strip_prefix('/').ok_or(SvoError::NotAbsolute)?;
        if p.is_empty() {
            return Ok(Object(String::new()));
        }
        let p = p.strip_suffix('/').unwrap_or(p);
        if p.len() > MAX_RAW_PATH {
            return Err(SvoError::TooLong);
        }
        let mut out = String::with_capacity(p.len().min(MAX_OBJECT));
        for (i, raw) in p.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            decode_segment(raw, &mut out)?;
            if out.len() > MAX_OBJECT {
                return Err(SvoError::TooLong);
            }
        }
        Ok(Object(out))
    }

    /// The object of a gRPC method path `/package.Service/Method`: `package.Service/Method`.
    /// Stricter than HTTP paths: exactly two segments, the service of ASCII letters, digits,
    /// `_` and `.` (not starting or ending with `.`, no `..`), the method of ASCII letters,
    /// digits and `_`; no percent-encoding at all (gRPC routes on the raw path).
    pub fn from_grpc_path(path: &str) -> Result<Object, SvoError> {
        let p = path.strip_prefix('/').ok_or(SvoError::NotGrpcMethod)?;
        let (service, method) = p.split_once('/').ok_or(SvoError::NotGrpcMethod)?;
        let word = |s: &str, dots: bool| {
            !s.is_empty()
                && s.len() <= 512
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
                && !s.starts_with('.')
                && !s.ends_with('.')
                && !s.contains("..")
        };
        if !word(service, true) || !word(method, false) {
            return Err(SvoError::NotGrpcMethod);
        }
        Ok(Object(p.to_owned()))
    }

    /// The object as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }
}

impl FromStr for Object {
    type Err = SvoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Object(String::new()));
        }
        if s.len() > MAX_OBJECT {
            return Err(SvoError::TooLong);
        }
        if !is_plain_ascii(s) && s.chars().any(is_forbidden_char) {
            return Err(SvoError::InvalidChar);
        }
        if s.split('/').any(str::is_empty) {
            return Err(SvoError::EmptySegment);
        }
        Ok(Object(s.to_owned()))
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Percent-decode one raw path segment once into `out`, refusing what [`Object::from_path`]
/// refuses.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), SvoError> {
    if raw.is_empty() {
        return Err(SvoError::EmptySegment);
    }
    let start = out.len();
    if !raw.contains('%') {
        out.push_str(raw);
    } else {
        let bytes = raw.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(SvoError::Encoding);
                };
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        out.push_str(std::str::from_utf8(&decoded).map_err(|_| SvoError::Encoding)?);
    }
    let seg = &out[start..];
    if seg == "." || seg == ".." {
        return Err(SvoError::DotSegment);
    }
    for c in seg.chars() {
        match c {
            '/' | '\\' => return Err(SvoError::EncodedSeparator),
            '%' => return Err(SvoError::DoubleEncoded),
            ';' => return Err(SvoError::Parameter),
            '?' | '#' => return Err(SvoError::InvalidChar),
            c if is_forbidden_char(c) => return Err(SvoError::InvalidChar),
            _ => {}
        }
    }
    Ok(())
}

/// Who acts: a token subject such as `user:alice`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// The subject as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Subject {
    /// A subject from an owned string, checked like [`FromStr`] (no copy).
    pub fn new(s: impl Into<String>) -> Result<Subject, SvoError> {
        let s = s.into();
        check_identifier(&s)?;
        Ok(Subject(s))
    }
}

impl FromStr for Subject {
    type Err = SvoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_identifier(s)?;
        Ok(Subject(s.to_owned()))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

impl PartialEq<str> for Subject {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Subject {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Subject> for &str {
    fn eq(&self, other: &Subject) -> bool {
        *self == other.0
    }
}

impl serde::Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Decoding checks the identifier grammar ([`check_identifier`]), as [`FromStr`] does.
impl<'de> serde::Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        check_identifier(&s).map_err(serde::de::Error::custom)?;
        Ok(Subject(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked test agrees with the byte-by-byte one: every byte at every offset of
    /// strings around the block size.
    #[test]
    fn plain_ascii_is_printable_ascii_without_space() {
        for len in [1, 15, 16, 17, 33] {
            for at in 0..len {
                for b in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    if let Ok(s) = std::str::from_utf8(&v) {
                        assert_eq!(
                            is_plain_ascii(s),
                            (0x21..0x7f).contains(&b),
                            "{b:#x} at {at}"
                        );
                    }
                }
            }
        }
        assert!(is_plain_ascii(""));
        assert!(!is_plain_ascii("user:\u{e9}"));
    }

    /// Every byte of `object`'s segments percent-encoded (the separators kept).
    fn encode_all(object: &str) -> String {
        let mut out = String::from("/");
        for b in object.bytes() {
            if b == b'/' {
                out.push('/');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The length limit is on the decoded object: the same object is accepted or refused
    /// whatever its encoding (found by the path_canon fuzz target: a 3,000-byte path of `-`
    /// was accepted raw but refused once encoded).
    #[test]
    fn length_limit_does_not_depend_on_the_encoding() {
        for object in [
            "-".repeat(3000),
            format!("{}/{}", "a".repeat(4000), "-".repeat(4191)),
            "x".repeat(MAX_OBJECT),
            "é".repeat(MAX_OBJECT / 2),
        ] {
            let raw = Object::from_path(&format!("/{object}")).unwrap();
            assert_eq!(raw.as_str(), object);
            let encoded = encode_all(&object);
            assert!(encoded.len() > MAX_OBJECT);
            assert_eq!(Object::from_path(&encoded), Ok(raw.clone()));
            assert_eq!(Object::from_path(&format!("{encoded}/")), Ok(raw.clone()));
            assert_eq!(object.parse::<Object>(), Ok(raw));
        }
        for object in [
            "x".repeat(MAX_OBJECT + 1),
            format!("{}/b", "a".repeat(MAX_OBJECT - 1)),
        ] {
            assert_eq!(
                Object::from_path(&format!("/{object}")),
                Err(SvoError::TooLong)
            );
            assert_eq!(
                Object::from_path(&encode_all(&object)),
                Err(SvoError::TooLong)
            );
            assert_eq!(object.parse::<Object>(), Err(SvoError::TooLong));
        }
        // The raw path is bounded before decoding: no work for a megabyte of escapes.
        let huge = "%41".repeat(MAX_OBJECT + 1);
        assert_eq!(
            Object::from_path(&format!("/{huge}")),
            Err(SvoError::TooLong)
        );
    }

    #[test]
    fn verbs() {
        for (m, v) in [
            ("GET", "read"),
            ("HEAD", "read"),
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "update"),
            ("DELETE", "delete"),
        ] {
            assert_eq!(Verb::from_method(m).unwrap().as_str(), v);
            assert_eq!(v.parse::<Verb>().unwrap(), Verb::from_method(m).unwrap());
        }
        assert_eq!(Verb::from_method("OPTIONS"), None);
        assert_eq!(Verb::from_http_method("OPTIONS"), Some(Verb::Read));
        assert_eq!(Verb::from_http_method("TRACE"), None);
        for m in ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"] {
            assert!(Verb::from_http_method(m).unwrap().is_classified(), "{m}");
        }
        assert!(Verb::grpc_call().is_classified());
        assert_eq!("call".parse::<Verb>().unwrap(), Verb::grpc_call());
        assert!(!"approve".parse::<Verb>().unwrap().is_classified());
        assert_eq!("a:b".parse::<Verb>(), Err(SvoError::InvalidChar));
        assert_eq!("".parse::<Verb>(), Err(SvoError::Empty));
    }

    #[test]
    fn objects() {
        assert_eq!(Object::from_path("/").unwrap().as_str(), "");
        assert_eq!(
            Object::from_path("/a/b")
                .unwrap()
                .segments()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(Object::from_path("//a"), Err(SvoError::EmptySegment));
        assert_eq!(Object::from_path("//"), Err(SvoError::EmptySegment));
        assert_eq!(Object::from_path("/a//"), Err(SvoError::EmptySegment));
        assert_eq!(Object::from_path("*"), Err(SvoError::NotAbsolute));
        assert_eq!(
            Object::from_path("").map(|_| ()),
            Err(SvoError::NotAbsolute)
        );
        assert_eq!(Object::from_path("/a/%7e%41").unwrap().as_str(), "a/~A");
        use SvoError::*;
        for (path, err) in [
            ("/orders/x%2F..%2F..%2Fuser:bob/7", EncodedSeparator),
            ("/orders/x%2f..", EncodedSeparator),
            ("/orders/a%5Cb", EncodedSeparator),
            ("/orders/a%5cb", EncodedSeparator),
            ("/orders/%2e%2e/admin", DotSegment),
            ("/orders/%2E/x", DotSegment),
            ("/orders/./x", DotSegment),
            ("/orders/../admin", DotSegment),
            ("/orders/.%2e", DotSegment),
            ("/orders/x%252F", DoubleEncoded),
            ("/orders/%252e%252e", DoubleEncoded),
            ("/orders/%25", DoubleEncoded),
            ("/orders/%2", Encoding),
            ("/orders/%zz", Encoding),
            ("/orders/%ff", Encoding),
            ("/orders/%C3", Encoding),
            ("/orders/a%00b", InvalidChar),
            ("/orders/a%0Ab", InvalidChar),
            ("/orders/a%7Fb", InvalidChar),
            ("/orders/a%C2%9Bb", InvalidChar),
            ("/orders/a%E2%80%AEb", InvalidChar),
            ("/orders/a%20b", InvalidChar),
            ("/orders/a%3Fb", InvalidChar),
            ("/orders/a%23b", InvalidChar),
            ("/orders/a;jsessionid=1", Parameter),
            ("/orders/a%3Bb", Parameter),
        ] {
            assert_eq!(Object::from_path(path), Err(err), "{path}");
        }
        assert_eq!("a b".parse::<Object>(), Err(SvoError::InvalidChar));
    }

    #[test]
    fn grpc_paths() {
        assert_eq!(
            Object::from_grpc_path("/payments.v1.Payments/Charge")
                .unwrap()
                .as_str(),
            "payments.v1.Payments/Charge"
        );
        for bad in [
            "/payments.v1.Payments/Charge/x",
            "/payments.v1.Payments%2FCharge",
            "/payments.v1.Payments/",
            "//Charge",
            "/../Charge",
            "/a..b/C",
            "/.a/C",
            "payments.Payments/Charge",
            "/p.P/Ch%61rge",
            "/p.P/Ch arge",
        ] {
            assert!(Object::from_grpc_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects() {
        assert_eq!("".parse::<Subject>(), Err(SvoError::Empty));
        for bad in ["a b", "a\0b", "a\tb", "a\u{202E}b", "a\u{9b}b", "a\u{200B}"] {
            assert_eq!(
                bad.parse::<Subject>(),
                Err(SvoError::InvalidChar),
                "{bad:?}"
            );
        }
        assert_eq!("a".repeat(2000).parse::<Subject>(), Err(SvoError::TooLong));
        assert!("user:alice".parse::<Subject>().is_ok());
        assert_eq!("".parse::<Subject>(), Err(SvoError::Empty));
        assert_eq!("a\nb".parse::<Subject>(), Err(SvoError::InvalidChar));
    }
}

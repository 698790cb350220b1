//! The common access-control language: a subject performs a verb on an object.
//!
//! Subjects are token subjects such as `user:alice` or `spiffe://mesh.test/orders`. Verbs are
//! the four HTTP-derived verbs (`read`, `create`, `update`, `delete`) or any custom word.
//! Objects are `/`-separated paths without a leading `/`, e.g. `orders/42`.
//!
//! # Example
//! ```
//! use secmesh_core::svo::{Object, Verb};
//!
//! assert_eq!(Verb::from_method("GET"), Some(Verb::Read));
//! assert_eq!("approve".parse::<Verb>().unwrap().as_str(), "approve");
//! assert_eq!(Object::from_path("/orders/42/").unwrap().as_str(), "orders/42");
//! assert!(Object::from_path("/orders//42").is_err());
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
}

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
    /// An object from a request path: the leading and a trailing `/` are dropped
    /// (`/orders/42/` is `orders/42`). The query string must already be removed.
    pub fn from_path(path: &str) -> Result<Object, SvoError> {
        let p = path.strip_prefix('/').unwrap_or(path);
        let p = p.strip_suffix('/').unwrap_or(p);
        p.parse()
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
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
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

/// Who acts: a token subject such as `user:alice`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// The subject as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Subject {
    type Err = SvoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SvoError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SvoError::InvalidChar);
        }
        Ok(Subject(s.to_owned()))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!("a b".parse::<Object>(), Err(SvoError::InvalidChar));
    }

    #[test]
    fn subjects() {
        assert!("user:alice".parse::<Subject>().is_ok());
        assert_eq!("".parse::<Subject>(), Err(SvoError::Empty));
        assert_eq!("a\nb".parse::<Subject>(), Err(SvoError::InvalidChar));
    }
}

//! Subject attributes for the policy: where a rule's `attributes` conditions get their values.
//!
//! A rule such as `attributes = { tier = ["gold"] }` matches only when the request has an
//! attribute `tier` with a value matching `gold`. The values come from an [`AttributeSource`];
//! the default, [`TctxAttributes`], reads the token's `tctx` (transaction context) claim:
//! each string, number or boolean member is one attribute, an array of them a multi-valued
//! one, and nested objects are ignored. A service with no source
//! ([`SecureBuilder::no_attributes`](crate::stack::SecureBuilder::no_attributes),
//! [`AuthorizeLayer::no_attributes`](super::AuthorizeLayer::no_attributes)) refuses a policy
//! with attribute conditions at build time, and a request decided while such a policy is loaded
//! (e.g. after a reload) with [`DenyReason::PolicyNeedsAttributes`](crate::deny::DenyReason):
//! such a rule is refused loudly, never silently unmatched.
//!
//! # Example
//! ```
//! use secmesh_core::{Audience, Claims, ExpiryClass};
//! use secmesh_tower::authorize::{AttributeSource, Attributes, TctxAttributes};
//!
//! let aud = Audience::One("orders".into());
//! let sub = "user:alice".parse()?;
//! let mut claims = Claims::new("gw", sub, aud, 0, 60, "j1", ExpiryClass::Fast);
//! claims.tctx = serde_json::json!({"tier": "gold", "roles": ["a", "b"], "n": {"x": 1}})
//!     .as_object().cloned();
//! let parts = http::Request::new(()).into_parts().0;
//! let mut out = Attributes::default();
//! TctxAttributes.attributes(&claims, &parts, &mut out);
//! let mut got: Vec<_> = out.iter().collect();
//! got.sort();
//! assert_eq!(got, [("roles", "a"), ("roles", "b"), ("tier", "gold")]);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use http::request::Parts;
use secmesh_core::claims::Claims;

/// The attributes of one request, (name, value) pairs; a name may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes(Vec<(String, String)>);

impl Attributes {
    /// Add one value of attribute `name`.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the policy's subject attributes come from. Implement it to take them from a
/// directory, a header set by a trusted proxy, or the request itself.
pub trait AttributeSource: Send + Sync + 'static {
    /// Add the attributes of this request (with these verified claims) to `out`.
    fn attributes(&self, claims: &Claims, request: &Parts, out: &mut Attributes);
}

impl<F> AttributeSource for F
where
    F: Fn(&Claims, &Parts, &mut Attributes) + Send + Sync + 'static,
{
    fn attributes(&self, claims: &Claims, request: &Parts, out: &mut Attributes) {
        self(claims, request, out)
    }
}

/// The default source: the token's `tctx` claim (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct TctxAttributes;

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl AttributeSource for TctxAttributes {
    fn attributes(&self, claims: &Claims, _: &Parts, out: &mut Attributes) {
        let Some(tctx) = &claims.tctx else { return };
        for (name, value) in tctx {
            match value {
                serde_json::Value::Array(items) => {
                    for v in items.iter().filter_map(scalar) {
                        out.push(name.as_str(), v);
                    }
                }
                v => {
                    if let Some(v) = scalar(v) {
                        out.push(name.as_str(), v);
                    }
                }
            }
        }
    }
}

/// The shared handle on a source.
#[derive(Clone)]
pub(crate) struct Source(pub(crate) std::sync::Arc<dyn AttributeSource>);

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttributeSource")
    }
}

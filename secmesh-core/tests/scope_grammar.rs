//! Property tests for the one grant grammar: a scope that the minting path accepts is exactly a
//! scope whose grants the authorizer parses, parsed to the same grants, and it survives the
//! wire (encode, decode) byte for byte.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use proptest::prelude::*;
use secmesh_core::claims::{Claims, ClaimsError, Scope, ScopeError};
use secmesh_core::policy::{Grant, parse_scope};
use secmesh_core::{ExpiryClass, Subject};

/// Pieces that hit every branch of the grammar: verbs, `*`, `**`, separators, templates,
/// broken templates, partial wildcards, whitespace, a `:` inside the object.
const PIECES: &[&str] = &[
    "read", "a", "b", "*", "**", ":", "/", "{sub}", "{", "}", "x*", "u:a", " ", "\t", "é", "-",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..10).prop_map(|v| v.concat())
}

/// What the authorizer needs from one grant: it parses, and prints back as it was sent.
fn authorizer_grant(g: &str) -> Option<Grant> {
    let parsed: Grant = g.parse().ok()?;
    assert_eq!(parsed.to_string(), g, "a grant prints as it was sent");
    Some(parsed)
}

fn claims_with_scope(raw: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(Claims::new(
        "https://gw.mesh.test",
        "user:alice".parse::<Subject>().unwrap(),
        "mesh.test".into(),
        10,
        100,
        "j1",
        ExpiryClass::Fast,
    ))
    .unwrap();
    v["scope"] = serde_json::Value::String(raw.to_owned());
    serde_json::to_vec(&v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// One grant: accepted for minting iff the authorizer parses it, to the same grant.
    #[test]
    fn one_grant_mints_iff_it_authorizes(verb in text(), object in text()) {
        let g = format!("{verb}:{object}");
        let minted = Scope::from_grants([(verb.as_str(), object.as_str())]);
        // A space inside a pair is refused by both (it would smuggle in a second grant).
        match (minted, authorizer_grant(&g)) {
            (Ok(scope), Some(parsed)) => {
                prop_assert_eq!(scope.grants(), &[parsed][..]);
                prop_assert_eq!(scope.as_str(), g.as_str());
            }
            (Err(ScopeError::Grant { index: 1, error }), None) => {
                prop_assert_eq!(Some(error), g.parse::<Grant>().err());
            }
            (m, a) => prop_assert!(false, "{g:?}: minting {m:?}, authorizer {a:?}"),
        }
    }

    /// A whole scope string: accepted iff it is single-space separated grants that the
    /// authorizer parses; then decoding claims that carry it yields the same typed grants, and
    /// re-encoding gives the same wire string.
    #[test]
    fn scope_mints_iff_every_grant_authorizes(raw in text()) {
        let pieces: Vec<&str> = raw.split(' ').collect();
        let well_spaced = !raw.is_empty() && pieces.iter().all(|p| !p.is_empty());
        let expected: Option<Vec<Grant>> = if well_spaced {
            pieces.iter().map(|p| authorizer_grant(p)).collect()
        } else {
            None
        };
        let minted = Scope::new(raw.as_str());
        prop_assert_eq!(minted.is_ok(), expected.is_some(), "{:?}: {:?}", raw, minted);

        // The lenient tool reader agrees on every well-spaced scope.
        if well_spaced {
            prop_assert_eq!(parse_scope(&raw).ok(), expected.clone());
        }

        // Decode: what the verifier runs on every token payload.
        let decoded = Claims::from_json(&claims_with_scope(&raw));
        match (decoded, expected) {
            (Ok(claims), Some(grants)) => {
                prop_assert_eq!(claims.grants(), &grants[..]);
                let again: serde_json::Value =
                    serde_json::from_slice(&serde_json::to_vec(&claims).unwrap()).unwrap();
                prop_assert_eq!(again["scope"].as_str(), Some(raw.as_str()));
            }
            (Err(ClaimsError::Scope(e)), None) => {
                prop_assert_eq!(Some(e), minted.err());
            }
            (d, e) => prop_assert!(false, "{raw:?}: decoded {d:?}, expected {e:?}"),
        }
    }
}

#[test]
fn typed_errors_name_the_grant() {
    assert_eq!(Scope::new(""), Err(ScopeError::Empty));
    assert_eq!(Scope::new("read:a  read:b"), Err(ScopeError::Spacing));
    assert!(matches!(
        Scope::new("read:a read:a/**/b"),
        Err(ScopeError::Grant { index: 2, .. })
    ));
    let many = vec!["read:a"; 257].join(" ");
    assert_eq!(Scope::new(many), Err(ScopeError::TooMany));
    let err = Claims::from_json(&claims_with_scope("read:a/**/b")).unwrap_err();
    assert!(matches!(
        err,
        ClaimsError::Scope(ScopeError::Grant { index: 1, .. })
    ));
    assert!(err.to_string().contains("`scope`"), "{err}");
}

#[test]
fn subject_is_typed_at_decode() {
    let mut v: serde_json::Value = serde_json::from_slice(&claims_with_scope("read:a")).unwrap();
    v["sub"] = "".into();
    let err = Claims::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ClaimsError::Subject(_)), "{err}");
    v["sub"] = "user:al\u{202E}ice".into();
    let err = Claims::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ClaimsError::Subject(_)), "{err}");
    v["sub"] = "user:alice".into();
    let c = Claims::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(c.sub, "user:alice");
    assert_eq!(c.sub.as_str(), "user:alice");
}

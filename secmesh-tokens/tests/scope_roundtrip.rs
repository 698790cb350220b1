//! Mint -> verify -> the same typed grants: the issuer refuses exactly the grants the
//! authorizer would refuse, and a token that mints verifies to the grants that were asked for.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use secmesh_core::policy::Grant;
use secmesh_core::svo::{Object, Subject, Verb};
use secmesh_core::{ExpiryClass, ManualClock};
use secmesh_tokens::{
    Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier, jws,
};

const NOW: u64 = 1_800_000_000;

const PIECES: &[&str] = &[
    "read", "a", "*", "**", ":", "/", "{sub}", "{", "x*", "u:a", "\t", "é",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..8).prop_map(|v| v.concat())
}

fn pair() -> (Issuer, Verifier) {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32]).unwrap();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))))
        .issuer("https://gw.mesh.test")
        .audience("mesh.test")
        .clock(clock.clone());
    let issuer = Issuer::new(key, "k1", "https://gw.mesh.test")
        .audience("mesh.test")
        .clock(clock);
    (issuer, verifier)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mint_iff_authorizable_and_verify_gives_the_same_grants(
        grants in prop::collection::vec((text(), text()), 1..4),
        verb in prop::sample::select(&["read", "a", "create"][..]),
        object in prop::sample::select(&["a", "a/a", "user:alice", "a/user:alice", "x/y"][..]),
    ) {
        let (issuer, verifier) = pair();
        let mut req = MintRequest::new("user:alice", ExpiryClass::Fast);
        for (v, o) in &grants {
            req = req.grant(v, o);
        }
        // The authorizer's view: each grant parsed on its own.
        let expected: Option<Vec<Grant>> =
            grants.iter().map(|(v, o)| format!("{v}:{o}").parse().ok()).collect();
        match (issuer.mint(&req), expected) {
            (Ok(token), Some(expected)) => {
                let verified = verifier.verify(&token).unwrap();
                prop_assert_eq!(verified.grants(), &expected[..]);
                // And they decide the same.
                let sub: Subject = "user:alice".parse().unwrap();
                let verb: Verb = verb.parse().unwrap();
                let object: Object = object.parse().unwrap();
                prop_assert_eq!(
                    verified.grants().iter().any(|g| g.covers(&verb, &object, &verified.sub)),
                    expected.iter().any(|g| g.covers(&verb, &object, &sub))
                );
            }
            (Err(_), None) => {}
            (m, e) => prop_assert!(false, "{grants:?}: mint {m:?}, authorizer {e:?}"),
        }
    }
}

/// One `grant()` is one grant: a space cannot smuggle a second, wider grant into the scope.
#[test]
fn one_grant_call_is_one_grant() {
    let (issuer, _) = pair();
    let req = MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/1 *:**");
    assert!(issuer.mint(&req).is_err());
    let req = MintRequest::new("user:alice", ExpiryClass::Fast).grant("read *:**", "orders/1");
    assert!(issuer.mint(&req).is_err());
}

/// A token signed with a scope the authorizer cannot parse never verifies: refused at decode
/// (`invalid_claim`), not with a 403 on every request.
#[test]
fn unparsable_scope_is_refused_at_verify() {
    let (_, verifier) = pair();
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32]).unwrap();
    let payload = format!(
        r#"{{"iss":"https://gw.mesh.test","sub":"user:alice","aud":"mesh.test","iat":{NOW},"exp":{},"jti":"j","cls":"fast","scope":"read:a/**/b"}}"#,
        NOW + 60
    );
    let token =
        jws::sign_compact(&key, Some("k1"), Some("txntoken+jwt"), payload.as_bytes()).unwrap();
    let err = verifier.verify(&token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClaim, "{err}");
    assert!(err.to_string().contains("scope"), "{err}");
}

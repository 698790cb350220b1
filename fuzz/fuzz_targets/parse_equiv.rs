#![no_main]
//! The one-pass token parser against the former two-pass one (kept in
//! secmesh-tokens/tests/reference): on arbitrary bytes as claims, as a compact token, and
//! signed as the payload of a token, both accept the same input with the same result and
//! refuse the rest with the same error.

#[path = "../../secmesh-tokens/tests/reference/mod.rs"]
mod reference;

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use secmesh_core::ManualClock;
use secmesh_core::claims::{Claims, ClaimsError};
use secmesh_core::json;
use secmesh_tokens::{Algorithm, KeySet, SigningKey, TXN_TOKEN_TYP, Verifier, jws};

fn key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| {
        SigningKey::from_hmac_secret(Algorithm::Hs256, b"fuzz-secret-fuzz-secret-fuzz-sec")
            .expect("key")
    })
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::new(KeySet::single(key().verifying_key(Some("k1".into()))))
            .issuer("https://gw.mesh.test")
            .audience("mesh.test")
            .clock(Arc::new(ManualClock::new(1_700_000_100)))
    })
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Box<Claims>),
    Json(json::JsonError),
    Missing(&'static str),
    Invalid,
    Subject(String),
    Scope(String),
    Other,
}

fn outcome(r: Result<Claims, ClaimsError>) -> Outcome {
    match r {
        Ok(c) => Outcome::Ok(Box::new(c)),
        Err(ClaimsError::Json(e)) => Outcome::Json(e),
        Err(ClaimsError::Missing(n)) => Outcome::Missing(n),
        Err(ClaimsError::Invalid(_)) => Outcome::Invalid,
        Err(ClaimsError::Subject(e)) => Outcome::Subject(format!("{e:?}")),
        Err(ClaimsError::Scope(e)) => Outcome::Scope(format!("{e:?}")),
        Err(_) => Outcome::Other,
    }
}

fn same_token(token: &str) {
    let new = jws::parse(token, jws::DEFAULT_MAX_SIZE);
    let old = reference::jws::parse(token, jws::DEFAULT_MAX_SIZE);
    match (&new, &old) {
        (Ok(n), Ok(o)) => {
            assert_eq!(
                (n.header.alg, &n.header.kid, &n.header.typ),
                (o.header.alg, &o.header.kid, &o.header.typ)
            );
            assert_eq!(n.payload, o.payload);
            assert_eq!(n.signature, o.signature);
        }
        (Err(n), Err(o)) => assert_eq!(n.kind(), o.kind()),
        _ => panic!("new {new:?}, reference {old:?}"),
    }
    let new = verifier().verify(token).map(|c| c.into_inner());
    let old = reference::verify(verifier(), token, TXN_TOKEN_TYP, jws::DEFAULT_MAX_SIZE);
    match (&new, &old) {
        (Ok(n), Ok(o)) => assert_eq!(n, o),
        (Err(n), Err(o)) => assert_eq!(n.kind(), o.kind()),
        _ => panic!("new {new:?}, reference {old:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        outcome(Claims::from_json(data)),
        outcome(reference::claims::from_json(data))
    );
    assert_eq!(
        json::check_object(data, json::DEFAULT_MAX_DEPTH),
        reference::json::check_object(data, json::DEFAULT_MAX_DEPTH)
    );
    if let Ok(s) = std::str::from_utf8(data) {
        same_token(s);
    }
    // The bytes as the payload (and, split at the first newline, header and payload) of a
    // signed token, so that the claims are reached.
    let (header, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            &br#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt"}"#[..],
            data,
        ),
    };
    if let Ok(t) = jws::sign_with_raw_header(key(), header, payload) {
        same_token(&t);
    }
});

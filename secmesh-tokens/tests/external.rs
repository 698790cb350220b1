//! External (IdP) tokens: every check of `IdpVerifier` played by an attacker.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh_core::ManualClock;
use secmesh_tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh_tokens::jws::{sign_compact, sign_with_raw_header};
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{Algorithm, ErrorKind, KeySet, SigningKey};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const IDP: &str = "https://idp.test";

struct Idp {
    key: SigningKey,
    verifier: IdpVerifier,
}

fn idp(kid: &str, iss: &str) -> Idp {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some(kid.into())));
    let verifier = IdpVerifier::new(Arc::new(KeySource::fixed(keys)), iss, "gateway")
        .clock(Arc::new(ManualClock::new(NOW)));
    Idp { key, verifier }
}

fn claims() -> serde_json::Value {
    json!({"iss": IDP, "sub": "alice", "aud": ["gateway", "other"], "iat": NOW - 10,
           "exp": NOW + 300, "scope": "orders  profile", "client_id": "web", "amr": ["pwd", "otp"]})
}

fn sign(i: &Idp, typ: Option<&str>, claims: &serde_json::Value) -> String {
    sign_compact(&i.key, Some("k1"), typ, claims.to_string().as_bytes()).unwrap()
}

fn kind(i: &Idp, token: &str) -> ErrorKind {
    i.verifier.verify(token).unwrap_err().kind()
}

#[test]
fn a_good_access_token_verifies_and_reads() {
    let i = idp("k1", IDP);
    let v = i
        .verifier
        .verify(&sign(&i, Some("at+jwt"), &claims()))
        .unwrap();
    assert_eq!((v.iss.as_str(), v.sub.as_str()), (IDP, "alice"));
    assert_eq!(v.scopes, ["orders", "profile"]);
    assert_eq!(v.client_id.as_deref(), Some("web"));
    assert_eq!(v.amr, ["pwd", "otp"]);
    assert_eq!(v.kid(), Some("k1"));
    // `application/` and case do not matter; `JWT` is accepted by default.
    assert!(
        i.verifier
            .verify(&sign(&i, Some("application/AT+JWT"), &claims()))
            .is_ok()
    );
    assert!(i.verifier.verify(&sign(&i, Some("JWT"), &claims())).is_ok());
}

#[test]
fn typ_is_explicit_and_never_a_txn_token() {
    let i = idp("k1", IDP);
    assert_eq!(kind(&i, &sign(&i, None, &claims())), ErrorKind::WrongTyp);
    assert_eq!(
        kind(&i, &sign(&i, Some("txntoken+jwt"), &claims())),
        ErrorKind::WrongTyp
    );
    assert_eq!(
        kind(&i, &sign(&i, Some("secevent+jwt"), &claims())),
        ErrorKind::WrongTyp
    );
    let lenient = i
        .verifier
        .clone()
        .allow_missing_typ()
        .typs(["txntoken+jwt", "JWT"]);
    assert!(lenient.verify(&sign(&i, None, &claims())).is_ok());
    // Listed or not, a txn-token is not an external token.
    assert_eq!(
        lenient
            .verify(&sign(&i, Some("txntoken+jwt"), &claims()))
            .unwrap_err()
            .kind(),
        ErrorKind::WrongTyp
    );
}

#[test]
fn issuer_audience_subject_and_time() {
    let i = idp("k1", IDP);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        kind(&i, &sign(&i, Some("at+jwt"), &c))
    };
    assert_eq!(
        with(&|c| c["iss"] = json!("https://idp.test/")),
        ErrorKind::WrongIss
    );
    assert_eq!(with(&|c| c["aud"] = json!("billing")), ErrorKind::WrongAud);
    assert_eq!(with(&|c| c["aud"] = json!([])), ErrorKind::InvalidClaim);
    assert_eq!(with(&|c| c["sub"] = json!("")), ErrorKind::InvalidClaim);
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("sub");
        }),
        ErrorKind::MissingClaim
    );
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        ErrorKind::MissingClaim
    );
    assert_eq!(with(&|c| c["exp"] = json!(NOW - 61)), ErrorKind::Expired);
    assert_eq!(
        with(&|c| c["exp"] = json!((NOW + 300) as f64 + 0.5)),
        ErrorKind::InvalidClaim
    );
    assert_eq!(
        with(&|c| c["exp"] = json!(format!("{}", NOW + 300))),
        ErrorKind::InvalidClaim
    );
    assert_eq!(
        with(&|c| c["nbf"] = json!(NOW + 120)),
        ErrorKind::NotYetValid
    );
    assert_eq!(
        with(&|c| c["iat"] = json!(NOW + 120)),
        ErrorKind::NotYetValid
    );
    assert_eq!(
        with(&|c| c["iat"] = json!(NOW + 400)),
        ErrorKind::InvalidClaim
    );
    // A token that claims a year of validity is refused, with or without iat.
    assert_eq!(
        with(&|c| c["exp"] = json!(NOW + 365 * 86400)),
        ErrorKind::InvalidClaim
    );
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("iat");
            c["exp"] = json!(NOW + 2 * 86400);
        }),
        ErrorKind::InvalidClaim
    );
    assert_eq!(
        with(&|c| c["scope"] = json!(["orders"])),
        ErrorKind::InvalidClaim
    );
}

#[test]
fn the_payload_is_strict_json() {
    let i = idp("k1", IDP);
    let dup = format!(
        r#"{{"iss":"{IDP}","sub":"alice","sub":"admin","aud":"gateway","exp":{}}}"#,
        NOW + 60
    );
    let t = sign_compact(&i.key, Some("k1"), Some("at+jwt"), dup.as_bytes()).unwrap();
    assert_eq!(kind(&i, &t), ErrorKind::Malformed);
    let t = sign_compact(&i.key, Some("k1"), Some("at+jwt"), b"[1,2]").unwrap();
    assert_eq!(kind(&i, &t), ErrorKind::Malformed);
}

#[test]
fn keys_are_pinned() {
    let i = idp("k1", IDP);
    let other = idp("k1", IDP);
    // Same kid, another key: the signature fails.
    assert_eq!(
        kind(&i, &sign(&other, Some("at+jwt"), &claims())),
        ErrorKind::BadSignature
    );
    // No kid, an unknown kid.
    let t = sign_compact(
        &i.key,
        None,
        Some("at+jwt"),
        claims().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(kind(&i, &t), ErrorKind::UnknownKid);
    let t = sign_compact(
        &i.key,
        Some("k9"),
        Some("at+jwt"),
        claims().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(kind(&i, &t), ErrorKind::UnknownKid);
    // alg confusion: an HMAC over the token with some secret, claiming the EdDSA key's kid.
    let hs = SigningKey::from_hmac_secret(Algorithm::Hs256, b"0123456789abcdef0123456789abcdef")
        .unwrap();
    let t = sign_with_raw_header(
        &hs,
        br#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#,
        claims().to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(kind(&i, &t), ErrorKind::AlgMismatch);
    let t = sign_with_raw_header(
        &i.key,
        br#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt","crit":["exp"]}"#,
        claims().to_string().as_bytes(),
    )
    .unwrap();
    assert!(i.verifier.verify(&t).is_err());
}

#[tokio::test]
async fn several_issuers_by_iss() {
    let a = idp("a1", "https://a.test");
    let b = idp("b1", "https://b.test");
    let both = IdpVerifiers::new()
        .issuer(a.verifier.clone())
        .issuer(b.verifier.clone());
    let mut ca = claims();
    ca["iss"] = json!("https://a.test");
    let ta = sign_compact(
        &a.key,
        Some("a1"),
        Some("at+jwt"),
        ca.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(both.verify_async(&ta).await.unwrap().iss, "https://a.test");
    // B's key signing a token that says it is A's: A's keys do not know it.
    let forged = sign_compact(
        &b.key,
        Some("b1"),
        Some("at+jwt"),
        ca.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        both.verify_async(&forged).await.unwrap_err().kind(),
        ErrorKind::UnknownKid
    );
    let mut cc = claims();
    cc["iss"] = json!("https://c.test");
    let tc = sign_compact(
        &a.key,
        Some("a1"),
        Some("at+jwt"),
        cc.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        both.verify_async(&tc).await.unwrap_err().kind(),
        ErrorKind::WrongIss
    );
    let none = sign_compact(&a.key, Some("a1"), Some("at+jwt"), br#"{"sub":"x"}"#).unwrap();
    assert_eq!(
        both.verify_async(&none).await.unwrap_err().kind(),
        ErrorKind::MissingClaim
    );
}

#[test]
fn debug_never_shows_more_than_identifiers() {
    let i = idp("k1", IDP);
    let v = i
        .verifier
        .verify(&sign(&i, Some("at+jwt"), &claims()))
        .unwrap();
    let shown = format!("{v:?} {:?}", i.verifier);
    assert!(shown.contains("alice") && !shown.contains("eyJ"));
}

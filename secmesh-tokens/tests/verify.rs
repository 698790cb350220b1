//! Every reason the Verifier gives, each from a token crafted to have exactly that fault.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh_core::claims::{Claims, Confirmation};
use secmesh_core::{ExpiryClass, ManualClock};
use secmesh_tokens::{
    Algorithm, ErrorKind, Issuer, KeySet, MintRequest, RevocationList, SigningKey, Verifier, jws,
};

const NOW: u64 = 1_800_000_000;

struct Fx {
    key: SigningKey,
    issuer: Issuer,
    clock: Arc<ManualClock>,
    revoked: RevocationList,
}

impl Fx {
    fn new() -> Fx {
        let clock = Arc::new(ManualClock::new(NOW));
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[42; 32]).unwrap();
        let issuer = Issuer::new(
            SigningKey::from_hmac_secret(Algorithm::Hs256, &[42; 32]).unwrap(),
            "k1",
            "https://gw.mesh.test",
        )
        .audience("mesh.test")
        .clock(clock.clone());
        Fx {
            key,
            issuer,
            clock,
            revoked: RevocationList::new(),
        }
    }

    // The verifier's own (deprecated) slowest-class check is still tested here.
    #[allow(deprecated)]
    fn verifier(&self) -> Verifier {
        Verifier::new(KeySet::single(self.key.verifying_key(Some("k1".into()))))
            .issuer("https://gw.mesh.test")
            .audience("mesh.test")
            .max_class(ExpiryClass::Medium)
            .clock(self.clock.clone())
            .revocation(Arc::new(self.revoked.clone()))
    }

    fn kind(&self, token: &str) -> ErrorKind {
        self.verifier().verify(token).unwrap_err().kind()
    }

    fn claims(&self) -> Claims {
        self.issuer
            .claims_for(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap()
    }

    /// Sign a raw header and payload with the right key.
    fn raw(&self, header: &str, payload: &str) -> String {
        jws::sign_with_raw_header(&self.key, header.as_bytes(), payload.as_bytes()).unwrap()
    }

    fn payload_without(&self, claim: &str) -> String {
        let mut v = serde_json::to_value(self.claims()).unwrap();
        v.as_object_mut().unwrap().remove(claim);
        v.to_string()
    }
}

const HEADER: &str = r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt"}"#;

#[test]
fn a_good_token_passes_and_proves_it() {
    let fx = Fx::new();
    let token = fx.issuer.sign_claims(&fx.claims()).unwrap();
    let v = fx.verifier().verify(&token).unwrap();
    assert_eq!(v.kid(), Some("k1"));
    assert_eq!(v.alg(), Algorithm::Hs256);
    assert_eq!(v.sub, "user:alice");
}

#[test]
fn structural_and_key_errors() {
    let fx = Fx::new();
    let good = fx.issuer.sign_claims(&fx.claims()).unwrap();
    assert_eq!(fx.kind("a.b"), ErrorKind::Malformed);
    assert_eq!(fx.kind(&format!("{good}x")), ErrorKind::BadSignature);
    assert_eq!(
        fx.verifier()
            .max_size(100)
            .verify(&good)
            .unwrap_err()
            .kind(),
        ErrorKind::TooLarge
    );
    let p = fx.payload_without("nothing");
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"none","kid":"k1","typ":"txntoken+jwt"}"#, &p)),
        ErrorKind::Unsupported
    );
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"HS256","kid":"k2","typ":"txntoken+jwt"}"#, &p)),
        ErrorKind::UnknownKid
    );
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"HS256","typ":"txntoken+jwt"}"#, &p)),
        ErrorKind::UnknownKid
    );
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"HS512","kid":"k1","typ":"txntoken+jwt"}"#, &p)),
        ErrorKind::AlgMismatch
    );
    for h in [
        r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","crit":["exp"]}"#,
        r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","zip":"DEF"}"#,
        r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","b64":false}"#,
    ] {
        assert_eq!(fx.kind(&fx.raw(h, &p)), ErrorKind::ForbiddenHeader, "{h}");
    }
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#, &p)),
        ErrorKind::WrongTyp
    );
    assert_eq!(
        fx.kind(&fx.raw(r#"{"alg":"HS256","kid":"k1"}"#, &p)),
        ErrorKind::WrongTyp
    );
    // A signature by another key.
    let other = Issuer::new(
        SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32]).unwrap(),
        "k1",
        "https://gw.mesh.test",
    )
    .audience("mesh.test")
    .clock(fx.clock.clone());
    assert_eq!(
        fx.kind(&other.sign_claims(&fx.claims()).unwrap()),
        ErrorKind::BadSignature
    );
    // Not JSON / duplicate claims.
    assert_eq!(fx.kind(&fx.raw(HEADER, "not json")), ErrorKind::Malformed);
    assert_eq!(
        fx.kind(&fx.raw(HEADER, r#"{"sub":"a","sub":"b"}"#)),
        ErrorKind::Malformed
    );
}

#[test]
fn claim_errors() {
    let fx = Fx::new();
    for claim in ["iss", "sub", "aud", "iat", "exp", "jti", "cls"] {
        let token = fx.raw(HEADER, &fx.payload_without(claim));
        let err = fx.verifier().verify(&token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingClaim, "{claim}");
        assert!(err.detail().contains(claim));
    }
    let mut v = serde_json::to_value(fx.claims()).unwrap();
    v["exp"] = serde_json::json!("soon");
    assert_eq!(
        fx.kind(&fx.raw(HEADER, &v.to_string())),
        ErrorKind::InvalidClaim
    );

    let sign = |c: &Claims| fx.issuer.sign_claims(c).unwrap();
    let mut c = fx.claims();
    c.iss = "https://evil.test".into();
    assert_eq!(fx.kind(&sign(&c)), ErrorKind::WrongIss);
    let mut c = fx.claims();
    c.aud = "other.test".into();
    assert_eq!(fx.kind(&sign(&c)), ErrorKind::WrongAud);
    let mut c = fx.claims();
    c.cls = ExpiryClass::Slow;
    assert_eq!(fx.kind(&sign(&c)), ErrorKind::ClassNotAllowed);
    let mut c = fx.claims();
    c.exp = c.iat + 181;
    assert_eq!(fx.kind(&sign(&c)), ErrorKind::LifetimeExceedsClass);
    let mut c = fx.claims();
    c.exp = c.iat;
    assert_eq!(fx.kind(&sign(&c)), ErrorKind::InvalidClaim);
}

#[test]
fn time_and_skew_boundaries() {
    let fx = Fx::new();
    let token = fx.issuer.sign_claims(&fx.claims()).unwrap();
    let exp = NOW + 180;
    fx.clock.set(exp + 59);
    assert!(
        fx.verifier().verify(&token).is_ok(),
        "one second before exp + skew"
    );
    fx.clock.set(exp + 60);
    assert_eq!(fx.kind(&token), ErrorKind::Expired, "at exp + skew");
    assert!(fx.verifier().skew(0).verify(&token).is_err());

    fx.clock.set(NOW - 60);
    assert!(fx.verifier().verify(&token).is_ok(), "iat within the skew");
    fx.clock.set(NOW - 61);
    assert_eq!(fx.kind(&token), ErrorKind::NotYetValid);

    let mut c = fx.claims();
    c.nbf = Some(NOW + 100);
    fx.clock.set(NOW);
    assert_eq!(
        fx.kind(&fx.issuer.sign_claims(&c).unwrap()),
        ErrorKind::NotYetValid
    );
}

#[test]
fn revocation_by_jti_and_kid() {
    let fx = Fx::new();
    let c = fx.claims();
    let token = fx.issuer.sign_claims(&c).unwrap();
    assert!(fx.verifier().verify(&token).is_ok());
    fx.revoked.revoke_jti(c.jti.clone());
    assert_eq!(fx.kind(&token), ErrorKind::Revoked);

    let fx = Fx::new();
    let token = fx.issuer.sign_claims(&fx.claims()).unwrap();
    fx.revoked.revoke_kid("k1");
    assert_eq!(fx.kind(&token), ErrorKind::Revoked);
}

#[test]
fn every_algorithm_mints_and_verifies() {
    let rsa = std::fs::read_to_string(format!(
        "{}/tests/data/keys/rsa2048.pkcs8.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for alg in Algorithm::ALL.into_iter().filter(|a| a.is_supported()) {
        let key = SigningKey::generate(alg)
            .or_else(|_| SigningKey::from_pkcs8_pem(alg, &rsa))
            .unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let token = Issuer::new(key, "k", "i")
            .audience("a")
            .mint(&MintRequest::new("s", ExpiryClass::Slow))
            .unwrap();
        assert!(verifier.verify(&token).is_ok(), "{alg}");
    }
}

#[test]
fn nothing_secret_in_errors_or_debug() {
    let fx = Fx::new();
    let mut c = fx.claims();
    c.cnf = Some(Confirmation {
        x5t_s256: "thumb".into(),
    });
    let token = fx.issuer.sign_claims(&c).unwrap();
    let sig = token.rsplit('.').next().unwrap();
    let mut tampered = token.clone();
    tampered.push('A');
    for err in [
        fx.verifier().audience("x").verify(&token).unwrap_err(),
        fx.verifier().verify(&tampered).unwrap_err(),
    ] {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains(sig) && !text.contains(&token[..20]),
                "{text}"
            );
        }
    }
    let verified = fx.verifier().verify(&token).unwrap();
    assert!(!format!("{verified:?}").contains(sig));
}

/// Identifiers that reach the policy or the logs follow the subject grammar: a token whose
/// `sub`, `iss`, `aud`, `jti`, `req_wl` or actor is empty, or holds whitespace, control or
/// bidirectional formatting characters, does not verify (issue 11 §5).
#[test]
fn identifiers_follow_the_subject_grammar() {
    let fx = Fx::new();
    let bad_values = [
        "",
        "user:alice\u{0}",
        "user:\u{0}alice",
        "user alice",
        "user:alice\t",
        "user:alice\n",
        "user:\u{1b}[2Jalice",
        "user:\u{9b}alice",
        "user:\u{202E}ecila",
        "user:al\u{200B}ice",
        "\u{FEFF}user:alice",
        "user:\u{2066}alice",
    ];
    for claim in ["sub", "iss", "jti", "req_wl"] {
        for bad in bad_values {
            let mut v = serde_json::to_value(fx.claims()).unwrap();
            v[claim] = serde_json::Value::String(bad.into());
            let token = fx.raw(HEADER, &v.to_string());
            assert_eq!(
                fx.kind(&token),
                ErrorKind::InvalidClaim,
                "{claim} = {bad:?}"
            );
        }
    }
    for bad in bad_values {
        let mut v = serde_json::to_value(fx.claims()).unwrap();
        v["aud"] = serde_json::json!(["mesh.test", bad]);
        assert_eq!(
            fx.kind(&fx.raw(HEADER, &v.to_string())),
            ErrorKind::InvalidClaim
        );
        v["aud"] = serde_json::json!("mesh.test");
        v["act"] = serde_json::json!({"sub": "svc:a", "act": {"sub": bad}});
        assert_eq!(
            fx.kind(&fx.raw(HEADER, &v.to_string())),
            ErrorKind::InvalidClaim
        );
    }
    let mut v = serde_json::to_value(fx.claims()).unwrap();
    v["sub"] = serde_json::Value::String("u".repeat(1025));
    assert_eq!(
        fx.kind(&fx.raw(HEADER, &v.to_string())),
        ErrorKind::InvalidClaim
    );
    // Ordinary identifiers, including non-ASCII letters, still pass.
    v["sub"] = serde_json::Value::String("user:zoë@example.com".into());
    v["act"] = serde_json::json!({"sub": "spiffe://mesh.test/gateway"});
    assert!(
        fx.verifier()
            .verify(&fx.raw(HEADER, &v.to_string()))
            .is_ok()
    );
}

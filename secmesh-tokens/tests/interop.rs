//! Interop with the `jsonwebtoken` crate (v11, aws-lc-rs): its tokens verify here, ours verify
//! there, for EdDSA, ES256, ES384, RS256, PS256 and HS256.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jsonwebtoken as jwt;
use secmesh_core::claims::Claims;
use secmesh_core::{ExpiryClass, ManualClock};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, TXN_TOKEN_TYP, Verifier};

const ISS: &str = "https://gw.mesh.test";
const AUD: &str = "mesh.test";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Case {
    alg: Algorithm,
    ours: SigningKey,
    enc: jwt::EncodingKey,
    dec: jwt::DecodingKey,
    theirs: jwt::Algorithm,
}

fn cases() -> Vec<Case> {
    let secret = b"interop-secret-of-at-least-32-bytes!";
    let pem = |alg, file: &str| {
        let text = fixture(file);
        (SigningKey::from_pkcs8_pem(alg, &text).unwrap(), text)
    };
    let mut out = Vec::new();
    for (alg, file, theirs) in [
        (
            Algorithm::EdDsa,
            "ed25519.pkcs8v1.pem",
            jwt::Algorithm::EdDSA,
        ),
        (Algorithm::Es256, "p256.pkcs8.pem", jwt::Algorithm::ES256),
        (Algorithm::Es384, "p384.pkcs8.pem", jwt::Algorithm::ES384),
        (Algorithm::Rs256, "rsa2048.pkcs8.pem", jwt::Algorithm::RS256),
        (Algorithm::Ps256, "rsa2048.pkcs8.pem", jwt::Algorithm::PS256),
    ] {
        let (ours, text) = pem(alg, file);
        let public = ours.verifying_key(None).to_jwk();
        let (enc, dec) = match alg {
            Algorithm::EdDsa => (
                jwt::EncodingKey::from_ed_pem(text.as_bytes()).unwrap(),
                jwt::DecodingKey::from_ed_components(public.x.as_deref().unwrap()).unwrap(),
            ),
            Algorithm::Es256 | Algorithm::Es384 => (
                jwt::EncodingKey::from_ec_pem(text.as_bytes()).unwrap(),
                jwt::DecodingKey::from_ec_components(
                    public.x.as_deref().unwrap(),
                    public.y.as_deref().unwrap(),
                )
                .unwrap(),
            ),
            _ => (
                jwt::EncodingKey::from_rsa_pem(text.as_bytes()).unwrap(),
                jwt::DecodingKey::from_rsa_components(
                    public.n.as_deref().unwrap(),
                    public.e.as_deref().unwrap(),
                )
                .unwrap(),
            ),
        };
        out.push(Case {
            alg,
            ours,
            enc,
            dec,
            theirs,
        });
    }
    out.push(Case {
        alg: Algorithm::Hs256,
        ours: SigningKey::from_hmac_secret(Algorithm::Hs256, secret).unwrap(),
        enc: jwt::EncodingKey::from_secret(secret),
        dec: jwt::DecodingKey::from_secret(secret),
        theirs: jwt::Algorithm::HS256,
    });
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn theirs_verify_here() {
    for c in cases() {
        let t = now();
        let mut claims = Claims::new(
            ISS,
            "user:alice".parse().unwrap(),
            AUD.into(),
            t,
            t + 180,
            "jti-1",
            ExpiryClass::Fast,
        );
        claims.scope = Some("read:orders/*".parse().unwrap());
        let mut header = jwt::Header::new(c.theirs);
        header.kid = Some("k1".into());
        header.typ = Some(TXN_TOKEN_TYP.into());
        let token = jwt::encode(&header, &claims, &c.enc).unwrap();

        let verifier = Verifier::new(KeySet::single(c.ours.verifying_key(Some("k1".into()))))
            .issuer(ISS)
            .audience(AUD)
            .clock(Arc::new(ManualClock::new(t)));
        let verified = verifier
            .verify(&token)
            .unwrap_or_else(|e| panic!("{}: {e}", c.alg));
        assert_eq!(*verified.claims(), claims, "{}", c.alg);
    }
}

#[test]
fn ours_verify_there() {
    for c in cases() {
        let issuer = Issuer::new(c.ours, "k1", ISS).audience(AUD);
        let token = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Medium).grant("read", "orders/*"))
            .unwrap();
        let mut validation = jwt::Validation::new(c.theirs);
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[ISS]);
        let data = jwt::decode::<Claims>(&token, &c.dec, &validation)
            .unwrap_or_else(|e| panic!("{}: {e}", c.alg));
        assert_eq!(data.claims.sub, "user:alice");
        assert_eq!(data.header.typ.as_deref(), Some(TXN_TOKEN_TYP));
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
    }
}

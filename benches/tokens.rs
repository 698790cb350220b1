//! Sign and verify per algorithm: secmesh, the raw crypto backend on the same signing input
//! (the floor), and jsonwebtoken (the peer a user would pick instead, on aws-lc-rs).
//!
//! Run on each backend:
//! ```text
//! cargo bench -p secmesh --bench tokens                         # secmesh on ring
//! cargo bench -p secmesh --bench tokens --features aws-lc-rs    # secmesh on aws-lc-rs
//! ```
//! The raw floor is measured on both ring and aws-lc-rs in each run; compare secmesh with the
//! floor of the backend it was built with (printed at the start) and with jsonwebtoken, which
//! runs on aws-lc-rs.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken as jwt;
use secmesh::core::claims::Claims;
use secmesh::core::{ExpiryClass, ManualClock};
use secmesh::tokens::{
    Algorithm, Issuer, KeySet, MintRequest, SigningKey, TXN_TOKEN_TYP, Verifier, jws,
};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://gw.mesh.test";
const AUD: &str = "mesh.test";

/// One algorithm's keys in every library's format.
struct Fixture {
    alg: Algorithm,
    pkcs8: Vec<u8>,
    hmac: Vec<u8>,
}

fn fixture(alg: Algorithm) -> Fixture {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature as sig;
    let rng = SystemRandom::new();
    let pkcs8 = match alg {
        Algorithm::EdDsa => sig::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref()
            .to_vec(),
        Algorithm::Es256 => {
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec()
        }
        Algorithm::Es384 => {
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec()
        }
        Algorithm::Rs256 | Algorithm::Ps256 => {
            let kp = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = kp.as_der().unwrap();
            der.as_ref().to_vec()
        }
        _ => Vec::new(),
    };
    Fixture {
        alg,
        pkcs8,
        hmac: vec![0x5a; 32],
    }
}

impl Fixture {
    fn secmesh_key(&self) -> SigningKey {
        if self.alg == Algorithm::Hs256 {
            SigningKey::from_hmac_secret(self.alg, &self.hmac).unwrap()
        } else {
            SigningKey::from_pkcs8_der(self.alg, &self.pkcs8).unwrap()
        }
    }

    fn pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn jwt_alg(&self) -> jwt::Algorithm {
        match self.alg {
            Algorithm::EdDsa => jwt::Algorithm::EdDSA,
            Algorithm::Es256 => jwt::Algorithm::ES256,
            Algorithm::Es384 => jwt::Algorithm::ES384,
            Algorithm::Rs256 => jwt::Algorithm::RS256,
            Algorithm::Ps256 => jwt::Algorithm::PS256,
            _ => jwt::Algorithm::HS256,
        }
    }

    fn jwt_keys(&self, secmesh: &SigningKey) -> (jwt::EncodingKey, jwt::DecodingKey) {
        let jwk = secmesh.verifying_key(None).to_jwk();
        match self.alg {
            Algorithm::EdDsa => (
                jwt::EncodingKey::from_ed_der(&self.pkcs8),
                jwt::DecodingKey::from_ed_components(jwk.x.as_deref().unwrap()).unwrap(),
            ),
            Algorithm::Es256 | Algorithm::Es384 => (
                jwt::EncodingKey::from_ec_der(&self.pkcs8),
                jwt::DecodingKey::from_ec_components(
                    jwk.x.as_deref().unwrap(),
                    jwk.y.as_deref().unwrap(),
                )
                .unwrap(),
            ),
            Algorithm::Rs256 | Algorithm::Ps256 => (
                jwt::EncodingKey::from_rsa_pem(self.pem().as_bytes()).unwrap(),
                jwt::DecodingKey::from_rsa_components(
                    jwk.n.as_deref().unwrap(),
                    jwk.e.as_deref().unwrap(),
                )
                .unwrap(),
            ),
            _ => (
                jwt::EncodingKey::from_secret(&self.hmac),
                jwt::DecodingKey::from_secret(&self.hmac),
            ),
        }
    }
}

type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8>>;
type VerifyFn = Box<dyn Fn(&[u8], &[u8]) -> bool>;

/// The raw backend: sign / verify the same signing input with no JOSE around it.
enum Raw {
    Ring(SignFn, VerifyFn),
}

fn raw_ring(f: &Fixture) -> Raw {
    use ring::signature as s;
    let rng = ring::rand::SystemRandom::new();
    match f.alg {
        Algorithm::EdDsa => {
            let kp = Arc::new(s::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&f.pkcs8).unwrap());
            let public = s::KeyPair::public_key(&*kp).as_ref().to_vec();
            Raw::Ring(
                Box::new(move |m| kp.sign(m).as_ref().to_vec()),
                Box::new(move |m, sg| {
                    s::UnparsedPublicKey::new(&s::ED25519, &public)
                        .verify(m, sg)
                        .is_ok()
                }),
            )
        }
        Algorithm::Es256 | Algorithm::Es384 => {
            let (sa, va): (_, &'static dyn s::VerificationAlgorithm) = if f.alg == Algorithm::Es256
            {
                (
                    &s::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &s::ECDSA_P256_SHA256_FIXED,
                )
            } else {
                (
                    &s::ECDSA_P384_SHA384_FIXED_SIGNING,
                    &s::ECDSA_P384_SHA384_FIXED,
                )
            };
            let kp = s::EcdsaKeyPair::from_pkcs8(sa, &f.pkcs8, &rng).unwrap();
            let public = s::KeyPair::public_key(&kp).as_ref().to_vec();
            Raw::Ring(
                Box::new(move |m| kp.sign(&rng, m).unwrap().as_ref().to_vec()),
                Box::new(move |m, sg| s::UnparsedPublicKey::new(va, &public).verify(m, sg).is_ok()),
            )
        }
        Algorithm::Rs256 | Algorithm::Ps256 => {
            let kp = s::RsaKeyPair::from_pkcs8(&f.pkcs8).unwrap();
            let public = s::KeyPair::public_key(&kp).as_ref().to_vec();
            let (pad, params): (&'static dyn s::RsaEncoding, &'static s::RsaParameters) =
                if f.alg == Algorithm::Rs256 {
                    (&s::RSA_PKCS1_SHA256, &s::RSA_PKCS1_2048_8192_SHA256)
                } else {
                    (&s::RSA_PSS_SHA256, &s::RSA_PSS_2048_8192_SHA256)
                };
            Raw::Ring(
                Box::new(move |m| {
                    let mut out = vec![0; kp.public().modulus_len()];
                    kp.sign(pad, &rng, m, &mut out).unwrap();
                    out
                }),
                Box::new(move |m, sg| {
                    s::UnparsedPublicKey::new(params, &public)
                        .verify(m, sg)
                        .is_ok()
                }),
            )
        }
        _ => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &f.hmac);
            let k2 = key.clone();
            Raw::Ring(
                Box::new(move |m| ring::hmac::sign(&key, m).as_ref().to_vec()),
                Box::new(move |m, sg| ring::hmac::verify(&k2, m, sg).is_ok()),
            )
        }
    }
}

fn raw_aws(f: &Fixture) -> Raw {
    use aws_lc_rs::signature as s;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    match f.alg {
        Algorithm::EdDsa => {
            let kp = s::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&f.pkcs8).unwrap();
            let public = s::KeyPair::public_key(&kp).as_ref().to_vec();
            Raw::Ring(
                Box::new(move |m| kp.sign(m).as_ref().to_vec()),
                Box::new(move |m, sg| {
                    s::UnparsedPublicKey::new(&s::ED25519, &public)
                        .verify(m, sg)
                        .is_ok()
                }),
            )
        }
        Algorithm::Es256 | Algorithm::Es384 => {
            let (sa, va): (_, &'static dyn s::VerificationAlgorithm) = if f.alg == Algorithm::Es256
            {
                (
                    &s::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &s::ECDSA_P256_SHA256_FIXED,
                )
            } else {
                (
                    &s::ECDSA_P384_SHA384_FIXED_SIGNING,
                    &s::ECDSA_P384_SHA384_FIXED,
                )
            };
            let kp = s::EcdsaKeyPair::from_pkcs8(sa, &f.pkcs8).unwrap();
            let public = s::KeyPair::public_key(&kp).as_ref().to_vec();
            Raw::Ring(
                Box::new(move |m| kp.sign(&rng, m).unwrap().as_ref().to_vec()),
                Box::new(move |m, sg| s::UnparsedPublicKey::new(va, &public).verify(m, sg).is_ok()),
            )
        }
        Algorithm::Rs256 | Algorithm::Ps256 => {
            let kp = s::RsaKeyPair::from_pkcs8(&f.pkcs8).unwrap();
            let public = s::KeyPair::public_key(&kp).as_ref().to_vec();
            let (pad, params): (&'static dyn s::RsaEncoding, &'static s::RsaParameters) =
                if f.alg == Algorithm::Rs256 {
                    (&s::RSA_PKCS1_SHA256, &s::RSA_PKCS1_2048_8192_SHA256)
                } else {
                    (&s::RSA_PSS_SHA256, &s::RSA_PSS_2048_8192_SHA256)
                };
            Raw::Ring(
                Box::new(move |m| {
                    let mut out = vec![0; kp.public_modulus_len()];
                    kp.sign(pad, &rng, m, &mut out).unwrap();
                    out
                }),
                Box::new(move |m, sg| {
                    s::UnparsedPublicKey::new(params, &public)
                        .verify(m, sg)
                        .is_ok()
                }),
            )
        }
        _ => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &f.hmac);
            let k2 = key.clone();
            Raw::Ring(
                Box::new(move |m| aws_lc_rs::hmac::sign(&key, m).as_ref().to_vec()),
                Box::new(move |m, sg| aws_lc_rs::hmac::verify(&k2, m, sg).is_ok()),
            )
        }
    }
}

fn bench(c: &mut Criterion) {
    eprintln!("secmesh-tokens backend: {}", secmesh::tokens::BACKEND);
    let clock = Arc::new(ManualClock::new(NOW));
    for alg in [
        Algorithm::EdDsa,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Rs256,
        Algorithm::Ps256,
        Algorithm::Hs256,
    ] {
        let f = fixture(alg);
        let key = f.secmesh_key();
        let keys = KeySet::single(key.verifying_key(Some("k1".into())));
        let (enc, dec) = f.jwt_keys(&key);
        let issuer = Issuer::new(f.secmesh_key(), "k1", ISS)
            .audience(AUD)
            .clock(clock.clone());
        let req = MintRequest::new("user:alice", ExpiryClass::Fast)
            .grant("read", "orders/*")
            .grant("create", "orders")
            .actor("spiffe://mesh.test/gateway")
            .req_wl("spiffe://mesh.test/gateway");
        let token = issuer.mint(&req).unwrap();
        let claims: Claims = issuer.claims_for(&req).unwrap();
        #[allow(deprecated)] // the same verifier work as before the class moved to the stack
        let verifier = Verifier::new(keys)
            .issuer(ISS)
            .audience(AUD)
            .max_class(ExpiryClass::Fast)
            .clock(clock.clone());
        assert!(verifier.verify(&token).is_ok());

        let mut header = jwt::Header::new(f.jwt_alg());
        header.kid = Some("k1".into());
        header.typ = Some(TXN_TOKEN_TYP.into());
        let mut validation = jwt::Validation::new(f.jwt_alg());
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[ISS]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti"]);
        validation.leeway = 60;
        // jsonwebtoken checks exp against the system clock; our fixed NOW lies in the future
        // of the bench machine, so its tokens are valid for it too.
        let jwt_token = jwt::encode(&header, &claims, &enc).unwrap();
        assert!(jwt::decode::<Claims>(&jwt_token, &dec, &validation).is_ok());
        assert!(verifier.verify(&jwt_token).is_ok(), "interop");

        let dot = token.rfind('.').unwrap();
        let signing_input = token.as_bytes()[..dot].to_vec();
        let sig = URL_SAFE_NO_PAD.decode(&token[dot + 1..]).unwrap();
        let Raw::Ring(ring_sign, ring_verify) = raw_ring(&f);
        let Raw::Ring(aws_sign, aws_verify) = raw_aws(&f);
        assert!(ring_verify(&signing_input, &sig));
        assert!(aws_verify(&signing_input, &sig));

        let mut g = c.benchmark_group(format!("verify/{alg}"));
        g.bench_function("secmesh", |b| {
            b.iter(|| verifier.verify(black_box(&token)).unwrap())
        });
        g.bench_function("raw-ring", |b| {
            b.iter(|| assert!(ring_verify(black_box(&signing_input), black_box(&sig))))
        });
        g.bench_function("raw-aws-lc", |b| {
            b.iter(|| assert!(aws_verify(black_box(&signing_input), black_box(&sig))))
        });
        g.bench_function("jsonwebtoken", |b| {
            b.iter(|| jwt::decode::<Claims>(black_box(&jwt_token), &dec, &validation).unwrap())
        });
        g.finish();

        let mut g = c.benchmark_group(format!("sign/{alg}"));
        g.bench_function("secmesh", |b| {
            b.iter(|| issuer.sign_claims(black_box(&claims)).unwrap())
        });
        g.bench_function("raw-ring", |b| {
            b.iter(|| ring_sign(black_box(&signing_input)))
        });
        g.bench_function("raw-aws-lc", |b| {
            b.iter(|| aws_sign(black_box(&signing_input)))
        });
        g.bench_function("jsonwebtoken", |b| {
            b.iter(|| jwt::encode(&header, black_box(&claims), &enc).unwrap())
        });
        g.finish();
    }
}

#[path = "../secmesh-tokens/tests/reference/mod.rs"]
mod reference;

const HS_SECRET: [u8; 32] = [0x5a; 32];

/// The claims of a realistic transaction token: two grants, an actor, a requesting workload,
/// a transaction id and a small `rctx`; `pad` more grants and `rctx` members make it bigger.
fn realistic_claims(grants: usize, rctx: usize) -> String {
    let mut scope = String::from("read:orders/{sub}/** create:orders/{sub}");
    for i in 0..grants {
        scope.push_str(&format!(" read:catalog/items/{i}/*"));
    }
    let mut ctx = String::from(r#""req_ip":"203.0.113.7","authn":"mfa""#);
    for i in 0..rctx {
        ctx.push_str(&format!(r#","k{i}":"v{i}""#));
    }
    format!(
        r#"{{"iss":"{ISS}","sub":"user:alice","aud":"{AUD}","iat":{NOW},"exp":{},"jti":"0b8f6e2c5d1a4c7e","txn":"4bf92f3577b34da6a3ce929d0e0e4736","cls":"fast","scope":"{scope}","req_wl":"spiffe://mesh.test/ns/edge/sa/gateway","act":{{"sub":"spiffe://mesh.test/gateway"}},"rctx":{{{ctx}}}}}"#,
        NOW + 120
    )
}

const HS_HEADER: &str = r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt"}"#;

fn hs_token(claims: &str) -> String {
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &HS_SECRET).unwrap();
    jws::sign_with_raw_header(&key, HS_HEADER.as_bytes(), claims.as_bytes()).unwrap()
}

/// An HS256 token of about `size` bytes (at most `size`): the realistic one, minus its actor
/// and context for the smallest, plus grants and context members for the bigger ones.
fn sized_token(size: usize) -> String {
    if size <= 300 {
        let claims = format!(
            r#"{{"iss":"{ISS}","sub":"user:alice","aud":"{AUD}","iat":{NOW},"exp":{},"jti":"j1","cls":"fast","scope":"read:orders/*"}}"#,
            NOW + 120
        );
        return hs_token(&claims);
    }
    let mut best = hs_token(&realistic_claims(0, 0));
    for n in 0.. {
        let t = hs_token(&realistic_claims(n, n / 2));
        if t.len() > size {
            break;
        }
        best = t;
    }
    best
}

/// Parse (JWS + claims, no signature), verify HS256 for a realistic ~600-byte token, and
/// verify cost by token size: secmesh, the former parser (`reference`, kept in the test
/// tree), serde_json::Value, jsonwebtoken, and the raw HMAC floor.
fn parse_bench(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &HS_SECRET).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let verifier = Verifier::new(keys).issuer(ISS).audience(AUD).clock(clock);
    let token = sized_token(600);
    eprintln!("realistic token: {} bytes", token.len());
    assert!(verifier.verify(&token).is_ok());
    let old = reference::verify(&verifier, &token, TXN_TOKEN_TYP, jws::DEFAULT_MAX_SIZE).unwrap();
    assert_eq!(*verifier.verify(&token).unwrap(), old);

    let mut g = c.benchmark_group("parse");
    g.bench_function("secmesh", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let parts =
                jws::parse_into(black_box(&token), jws::DEFAULT_MAX_SIZE, &mut buf).unwrap();
            Claims::from_json(parts.payload).unwrap()
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            let parts = reference::jws::parse(black_box(&token), jws::DEFAULT_MAX_SIZE).unwrap();
            reference::claims::from_json(&parts.payload).unwrap()
        })
    });
    g.bench_function("serde_json-value", |b| {
        b.iter(|| {
            let t = black_box(&token);
            let mut it = t.split('.');
            let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
            let p = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
            (
                serde_json::from_slice::<serde_json::Value>(&h).unwrap(),
                serde_json::from_slice::<serde_json::Value>(&p).unwrap(),
            )
        })
    });
    g.bench_function("jsonwebtoken", |b| {
        b.iter(|| jwt::dangerous::insecure_decode::<Claims>(black_box(&token)).unwrap())
    });
    g.finish();

    let dec = jwt::DecodingKey::from_secret(&HS_SECRET);
    let mut validation = jwt::Validation::new(jwt::Algorithm::HS256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti"]);
    validation.leeway = 60;
    assert!(jwt::decode::<Claims>(&token, &dec, &validation).is_ok());
    let dot = token.rfind('.').unwrap();
    let signing_input = token.as_bytes()[..dot].to_vec();
    let sig = URL_SAFE_NO_PAD.decode(&token[dot + 1..]).unwrap();
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &HS_SECRET);

    let mut g = c.benchmark_group("verify/hs256-600B");
    g.bench_function("secmesh", |b| {
        b.iter(|| verifier.verify(black_box(&token)).unwrap())
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            reference::verify(
                &verifier,
                black_box(&token),
                TXN_TOKEN_TYP,
                jws::DEFAULT_MAX_SIZE,
            )
            .unwrap()
        })
    });
    g.bench_function("jsonwebtoken", |b| {
        b.iter(|| jwt::decode::<Claims>(black_box(&token), &dec, &validation).unwrap())
    });
    g.bench_function("raw-ring-hmac", |b| {
        b.iter(|| ring::hmac::verify(&hmac, black_box(&signing_input), black_box(&sig)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("verify-size/hs256");
    for size in [300, 600, 2048, 8192] {
        let t = sized_token(size);
        eprintln!("verify-size/hs256/{size}: token of {} bytes", t.len());
        assert!(verifier.verify(&t).is_ok());
        g.throughput(criterion::Throughput::Bytes(t.len() as u64));
        g.bench_function(format!("{size}"), |b| {
            b.iter(|| verifier.verify(black_box(&t)).unwrap())
        });
        g.bench_function(format!("{size}-reference"), |b| {
            b.iter(|| {
                reference::verify(
                    &verifier,
                    black_box(&t),
                    TXN_TOKEN_TYP,
                    jws::DEFAULT_MAX_SIZE,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench, parse_bench
}
criterion_main!(benches);

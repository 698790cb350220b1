//! Keys from the formats users have: PKCS#8 v1 (OpenSSL, Python) and v2 (ring), PKCS#1,
//! SPKI, X.509, JWK/JWKS; each pinned to one algorithm; weak and unusable keys refused.
#![allow(clippy::unwrap_used)]

use secmesh_tokens::{
    Algorithm, ErrorKind, Jwk, JwkSet, KeyError, KeySet, SigningKey, VerifyingKey, jws,
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Sign with `key`, verify with `public` (kid `k`).
fn round_trip(key: &SigningKey, public: VerifyingKey) {
    let token = jws::sign_compact(key, Some("k"), None, b"payload").unwrap();
    let keys = KeySet::single(public);
    assert_eq!(
        jws::verify_compact(&token, &keys).unwrap().payload(),
        b"payload"
    );
}

#[test]
fn pkcs8_pem_from_openssl_and_python_with_spki_and_certificates() {
    let cases = [
        (
            "ed25519.pkcs8v1.pem",
            Algorithm::EdDsa,
            "ed25519.spki.pem",
            Some("ed25519.crt.pem"),
        ),
        (
            "ed25519.python.pem",
            Algorithm::EdDsa,
            "ed25519.python.spki.pem",
            None,
        ),
        (
            "p256.pkcs8.pem",
            Algorithm::Es256,
            "p256.spki.pem",
            Some("p256.crt.pem"),
        ),
        ("p384.pkcs8.pem", Algorithm::Es384, "p384.spki.pem", None),
        (
            "rsa2048.pkcs8.pem",
            Algorithm::Rs256,
            "rsa2048.spki.pem",
            Some("rsa2048.crt.pem"),
        ),
        (
            "rsa2048.pkcs8.pem",
            Algorithm::Ps512,
            "rsa2048.spki.pem",
            Some("rsa2048.crt.pem"),
        ),
        (
            "rsa2048.pkcs1.pem",
            Algorithm::Rs384,
            "rsa2048.spki.pem",
            None,
        ),
    ];
    for (private, alg, spki, cert) in cases {
        let key = SigningKey::from_pkcs8_pem(alg, &fixture(private)).unwrap();
        assert_eq!(key.alg(), alg);
        round_trip(&key, key.verifying_key(Some("k".into())));
        round_trip(
            &key,
            VerifyingKey::from_spki_pem(alg, &fixture(spki), Some("k".into())).unwrap(),
        );
        if let Some(cert) = cert {
            round_trip(
                &key,
                VerifyingKey::from_x509_pem(alg, &fixture(cert), Some("k".into())).unwrap(),
            );
        }
        // The exported JWK verifies too.
        let jwk = key.verifying_key(Some("k".into())).to_jwk();
        round_trip(&key, VerifyingKey::from_jwk(&jwk).unwrap());
    }
}

#[test]
fn pkcs8_v2_round_trip() {
    for alg in [Algorithm::EdDsa, Algorithm::Es256, Algorithm::Es384] {
        let key = SigningKey::generate(alg).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let again = SigningKey::from_pkcs8_pem(alg, &pem).unwrap();
        round_trip(&again, key.verifying_key(Some("k".into())));
    }
}

#[test]
fn keys_are_pinned_to_their_algorithm() {
    let wrong = [
        ("ed25519.pkcs8v1.pem", Algorithm::Es256),
        ("p256.pkcs8.pem", Algorithm::Es384),
        ("p256.pkcs8.pem", Algorithm::EdDsa),
        ("p384.pkcs8.pem", Algorithm::Es256),
        ("rsa2048.pkcs8.pem", Algorithm::Es256),
        ("rsa2048.pkcs8.pem", Algorithm::Hs256),
    ];
    for (private, alg) in wrong {
        assert!(
            SigningKey::from_pkcs8_pem(alg, &fixture(private)).is_err(),
            "{private} as {alg}"
        );
    }
    assert!(
        VerifyingKey::from_spki_pem(Algorithm::Es384, &fixture("p256.spki.pem"), None).is_err()
    );
    assert!(
        VerifyingKey::from_spki_pem(Algorithm::Rs256, &fixture("p256.spki.pem"), None).is_err()
    );
    assert!(matches!(
        VerifyingKey::from_spki_pem(Algorithm::Rs256, &fixture("p256.pkcs8.pem"), None),
        Err(KeyError::Pem(_))
    ));

    // An RS256 token is refused by a key pinned to PS256, though the RSA key is the same.
    let rs = SigningKey::from_pkcs8_pem(Algorithm::Rs256, &fixture("rsa2048.pkcs8.pem")).unwrap();
    let ps = SigningKey::from_pkcs8_pem(Algorithm::Ps256, &fixture("rsa2048.pkcs8.pem")).unwrap();
    let token = jws::sign_compact(&rs, Some("k"), None, b"x").unwrap();
    let keys = KeySet::single(ps.verifying_key(Some("k".into())));
    assert_eq!(
        jws::verify_compact(&token, &keys).unwrap_err().kind(),
        ErrorKind::AlgMismatch
    );
}

#[test]
fn weak_keys_are_refused() {
    assert!(matches!(
        SigningKey::from_pkcs8_pem(Algorithm::Rs256, &fixture("rsa1024.pkcs8.pem")),
        Err(KeyError::Weak(_))
    ));
    assert!(matches!(
        VerifyingKey::from_spki_pem(Algorithm::Rs256, &fixture("rsa1024.spki.pem"), None),
        Err(KeyError::Weak(_))
    ));
    for (alg, len) in [
        (Algorithm::Hs256, 31),
        (Algorithm::Hs384, 47),
        (Algorithm::Hs512, 63),
    ] {
        assert!(matches!(
            SigningKey::from_hmac_secret(alg, &vec![1; len]),
            Err(KeyError::Weak(_))
        ));
        assert!(SigningKey::from_hmac_secret(alg, &vec![1; len + 1]).is_ok());
    }
}

#[test]
fn jwk_sets_round_trip_and_refuse_ambiguity() {
    let a = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let b = SigningKey::generate(Algorithm::Es256).unwrap();
    let mut set = KeySet::new();
    set.insert(a.verifying_key(Some("a".into()))).unwrap();
    set.insert(b.verifying_key(Some("b".into()))).unwrap();
    let json = set.to_jwks().to_json();
    let loaded = KeySet::from_jwks_json(&json).unwrap();
    assert_eq!(loaded.kids().collect::<Vec<_>>(), [Some("a"), Some("b")]);
    let mut jwk_b = loaded.get(Some("b")).unwrap().to_jwk();
    jwk_b.kid = Some("k".into());
    round_trip(&b, VerifyingKey::from_jwk(&jwk_b).unwrap());

    // Duplicate kid.
    assert!(matches!(
        set.insert(a.verifying_key(Some("a".into()))),
        Err(KeyError::DuplicateKid(_))
    ));
    let mut dup = set.to_jwks();
    dup.keys[1].kid = Some("a".into());
    assert!(matches!(
        KeySet::from_jwk_set(&dup),
        Err(KeyError::DuplicateKid(_))
    ));
    // Symmetric beside asymmetric.
    let h = SigningKey::generate(Algorithm::Hs256).unwrap();
    assert!(matches!(
        set.insert(h.verifying_key(Some("h".into()))),
        Err(KeyError::MixedSet(_))
    ));
    // Public beside private.
    let mut mixed = set.to_jwks();
    mixed.keys[0].d = Some("AAAA".into());
    assert!(matches!(
        KeySet::from_jwk_set(&mixed),
        Err(KeyError::MixedSet(_))
    ));
    // Duplicate members inside one JWK are refused by the strict JSON check.
    assert!(Jwk::from_json(r#"{"kty":"OKP","kty":"EC"}"#).is_err());
}

#[test]
fn keys_not_for_signatures_never_verify() {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let token = jws::sign_compact(&key, Some("k"), None, b"x").unwrap();
    let mut enc = key.verifying_key(Some("k".into())).to_jwk();
    enc.use_ = Some("enc".into());
    let mut no_verify = key.verifying_key(Some("k".into())).to_jwk();
    no_verify.use_ = None;
    no_verify.key_ops = Some(vec!["sign".into()]);
    for jwk in [enc, no_verify] {
        let set = KeySet::from_jwk_set(&JwkSet { keys: vec![jwk] }).unwrap();
        assert_eq!(set.skipped().len(), 1);
        assert_eq!(
            jws::verify_compact(&token, &set).unwrap_err().kind(),
            ErrorKind::KeyNotUsable
        );
    }
}

#[test]
fn debug_never_shows_key_material() {
    let h = SigningKey::from_hmac_secret(Algorithm::Hs256, b"super-secret-value-0123456789abcdef")
        .unwrap();
    let jwk = h.to_hmac_jwk(Some("h".into())).unwrap();
    for text in [
        format!("{h:?}"),
        format!("{:?}", h.verifying_key(Some("h".into()))),
        format!("{jwk:?}"),
    ] {
        assert!(!text.contains(jwk.k.as_deref().unwrap()), "{text}");
        assert!(!text.contains("super-secret"), "{text}");
    }
    let ed = SigningKey::from_pkcs8_pem(Algorithm::EdDsa, &fixture("ed25519.pkcs8v1.pem")).unwrap();
    assert_eq!(format!("{ed:?}"), "SigningKey { alg: EdDsa, .. }");
}

/// A JWKS of `n` Ed25519 keys named `k0..`, the kid of key `dup` (if any) repeating `k0`, and
/// keys from `skip_from` on marked `use: enc` (left out, but their kids still count).
fn many_keys(n: usize, dup: Option<usize>, skip_from: usize) -> String {
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let keys: Vec<String> = (0..n)
        .map(|i| {
            let kid = if Some(i) == dup { 0 } else { i };
            let use_ = if i >= skip_from { "enc" } else { "sig" };
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"{use_}","kid":"k{kid}","x":"{x}"}}"#
            )
        })
        .collect();
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

#[test]
fn key_sets_are_bounded_and_linear() {
    use secmesh_tokens::key::MAX_KEYS;
    // Exactly at the limit: loads, and every kid is found.
    let set = KeySet::from_json(&many_keys(MAX_KEYS, None, usize::MAX)).unwrap();
    assert_eq!(set.len(), MAX_KEYS);
    assert!(set.get(Some("k999")).is_ok());
    assert!(set.get(Some("k1000")).is_err());
    // One over, far over (the rest is skipped, not built), over with skipped keys, and as a
    // JwkSet built in code: a typed error.
    for json in [
        many_keys(MAX_KEYS + 1, None, usize::MAX),
        many_keys(200_000, None, usize::MAX),
        many_keys(MAX_KEYS + 1, None, 10),
    ] {
        assert!(matches!(
            KeySet::from_json(&json),
            Err(KeyError::TooManyKeys { max: MAX_KEYS })
        ));
        assert!(matches!(
            KeySet::from_jwks_json(&json),
            Err(KeyError::TooManyKeys { max: MAX_KEYS })
        ));
    }
    let mut set = KeySet::from_json(&many_keys(MAX_KEYS, None, 500)).unwrap();
    assert_eq!((set.len(), set.skipped().len()), (500, 500));
    let extra = SigningKey::generate(Algorithm::EdDsa).unwrap();
    assert!(matches!(
        set.insert(extra.verifying_key(Some("extra".into()))),
        Err(KeyError::TooManyKeys { .. })
    ));
    // A duplicate kid anywhere (first among usable keys, last, among skipped ones) is found.
    for (dup, skip_from) in [(1, usize::MAX), (MAX_KEYS - 1, usize::MAX), (900, 800)] {
        assert!(matches!(
            KeySet::from_json(&many_keys(MAX_KEYS, Some(dup), skip_from)),
            Err(KeyError::DuplicateKid(k)) if k == "k0"
        ));
    }
}

/// An empty JWKS is refused when it is loaded, not on every request with `unknown_kid`.
#[test]
fn an_empty_key_set_is_refused_at_load() {
    for json in [r#"{"keys":[]}"#, r#"{"keys": [ ]}"#] {
        assert!(matches!(
            KeySet::from_jwks_json(json),
            Err(secmesh_tokens::KeyError::EmptySet)
        ));
        assert!(KeySet::from_json(json).is_err());
    }
}

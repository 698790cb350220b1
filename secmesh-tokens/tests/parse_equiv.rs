//! The one-pass parser (issue 13) against the former two-pass parser, kept verbatim in
//! `tests/reference`: on generated payloads, headers and tokens (valid, mutated, duplicate
//! keys, escapes, deep nesting, non-canonical base64, big/negative/float times, odd scopes)
//! both accept the same inputs with the same claims, and refuse the rest with the same error
//! (the same `JsonError`, the same missing claim, the same subject or scope error, the same
//! `ErrorKind` at the verifier).
#![allow(clippy::unwrap_used)]

mod reference;

use std::sync::Arc;

use proptest::prelude::*;
use secmesh_core::ManualClock;
use secmesh_core::claims::{Claims, ClaimsError};
use secmesh_core::json;
use secmesh_tokens::{Algorithm, KeySet, SigningKey, TXN_TOKEN_TYP, Verifier, jws};

const NOW: u64 = 1_700_000_100;

/// What an outcome of the claims decoder is compared by.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Box<Claims>),
    Json(json::JsonError),
    Missing(&'static str),
    Invalid,
    Subject(String),
    Scope(String),
}

fn outcome(r: Result<Claims, ClaimsError>) -> Outcome {
    match r {
        Ok(c) => Outcome::Ok(Box::new(c)),
        Err(ClaimsError::Json(e)) => Outcome::Json(e),
        Err(ClaimsError::Missing(n)) => Outcome::Missing(n),
        Err(ClaimsError::Invalid(_)) => Outcome::Invalid,
        Err(ClaimsError::Subject(e)) => Outcome::Subject(format!("{e:?}")),
        Err(ClaimsError::Scope(e)) => Outcome::Scope(format!("{e:?}")),
        Err(e) => panic!("a new ClaimsError variant: {e}"),
    }
}

fn same_claims(bytes: &[u8]) {
    let new = outcome(Claims::from_json(bytes));
    let old = outcome(reference::claims::from_json(bytes));
    assert_eq!(new, old, "payload {:?}", String::from_utf8_lossy(bytes));
    assert_eq!(
        json::check_object(bytes, json::DEFAULT_MAX_DEPTH),
        reference::json::check_object(bytes, json::DEFAULT_MAX_DEPTH),
        "check_object on {:?}",
        String::from_utf8_lossy(bytes)
    );
}

fn key() -> SigningKey {
    SigningKey::from_hmac_secret(Algorithm::Hs256, &[7u8; 32]).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(KeySet::single(key().verifying_key(Some("k1".into()))))
        .issuer("https://gw.mesh.test")
        .audience("mesh.test")
        .clock(Arc::new(ManualClock::new(NOW)))
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
            assert_eq!(n.signing_input, o.signing_input);
        }
        (Err(n), Err(o)) => assert_eq!(n.kind(), o.kind(), "{token:?}: {n} / {o}"),
        _ => panic!("{token:?}: new {new:?}, reference {old:?}"),
    }
    let v = verifier();
    let new = v.verify(token).map(|c| c.into_inner());
    let old = reference::verify(&v, token, TXN_TOKEN_TYP, jws::DEFAULT_MAX_SIZE);
    match (&new, &old) {
        (Ok(n), Ok(o)) => assert_eq!(n, o),
        (Err(n), Err(o)) => assert_eq!(n.kind(), o.kind(), "{token:?}: {n} / {o}"),
        _ => panic!("{token:?}: new {new:?}, reference {old:?}"),
    }
}

fn sign(header: &str, payload: &[u8]) -> String {
    jws::sign_with_raw_header(&key(), header.as_bytes(), payload).unwrap()
}

// ---- generators ----

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(pool).prop_map(str::to_owned)
}

const STRINGS: &[&str] = &[
    r#""user:alice""#,
    r#""https://gw.mesh.test""#,
    r#""mesh.test""#,
    r#""spiffe://mesh.test/gateway""#,
    r#""""#,
    r#""a b""#,
    r#""x\u0000""#,
    r#""\u00e9t\u00e9""#,
    r#""us\u0065r:alice""#,
    r#""\ud83d\ude00""#,
    r#""\ud800""#,
    r#""bad\q""#,
    r#""\u202e""#,
    "\"tab\there\"",
    "null",
    "5",
    "[\"a\"]",
];
const TIMES: &[&str] = &[
    "1700000000",
    "1700000180",
    "1700000060",
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "-0",
    "1.5",
    "1e3",
    "1.0",
    "01",
    "\"1700000000\"",
    "null",
    "true",
];
const AUDS: &[&str] = &[
    r#""mesh.test""#,
    r#"["mesh.test","other"]"#,
    r#"["other"]"#,
    "[]",
    "[1]",
    r#"["a",null]"#,
    "{}",
    r#"["a" "b"]"#,
    r#"["a",]"#,
    r#"[""]"#,
];
const TXNS: &[&str] = &[
    r#""4bf92f3577b34da6a3ce929d0e0e4736""#,
    r#""4BF92F3577B34DA6A3CE929D0E0E4736""#,
    r#""4bf9""#,
    r#""00000000000000000000000000000000""#,
    "5",
];
const CLASSES: &[&str] = &[
    r#""fast""#,
    r#""medium""#,
    r#""slow""#,
    r#""quick""#,
    r#""f\u0061st""#,
    r#"{"fast":null}"#,
    r#"{ "slow" : null }"#,
    r#"{"fast":1}"#,
    r#"{"fast":null,"x":1}"#,
    r#"{"quick":null}"#,
    "{}",
    "0",
    r#"["fast"]"#,
    r#"{"fast":nul}"#,
];
const SCOPES: &[&str] = &[
    r#""read:orders/* create:orders""#,
    r#""read:orders/{sub}/** call:inventory.v1.Inventory/Reserve""#,
    r#""read""#,
    r#""read:a  write:b""#,
    r#""""#,
    r#"" read:a""#,
    r#""read:a ""#,
    r#""*:x/**""#,
    r#""read:a/**/b""#,
    r#""read:a/b*""#,
    r#""read:{own}""#,
    r#""re\u0061d:a""#,
    r#""read:a\tb""#,
    "7",
];
const ACTORS: &[&str] = &[
    r#"{"sub":"svc:a"}"#,
    r#"{"sub":"svc:b","act":{"sub":"svc:a"}}"#,
    r#"{"iss":"x"}"#,
    r#"["svc:a"]"#,
    r#"["svc:a",{"sub":"svc:0"}]"#,
    r#"["svc:a",null]"#,
    r#"["a","b","c"]"#,
    "[]",
    r#"{"sub":"a","act":null}"#,
    r#"{"sub":"a","x":[1,{"y":2e400}]}"#,
    "null",
    r#"{"sub":5}"#,
    r#"{"sub":"a","sub":"b"}"#,
    r#"{"sub":"a b"}"#,
    r#"{"s\u0075b":"a"}"#,
    r#"{"sub":"a","act":{"sub":"b","act":{"sub":"c","act":{"sub":"d"}}}}"#,
    r#"{"sub":"a","act":7}"#,
];
const CNFS: &[&str] = &[
    r#"{"x5t#S256":"abc"}"#,
    r#"{"jkt":"x"}"#,
    r#"["abc"]"#,
    "[]",
    r#"["a","b"]"#,
    "{}",
    r#"{"x5t#S256":"a","x5t#S256":"b"}"#,
    r#"{"x5t#S256":1}"#,
];
const OBJECTS: &[&str] = &[
    r#"{"ip":"1.2.3.4"}"#,
    r#"{"k":[1,2.5,-3,1e400]}"#,
    r#"{"k":[1,2.5,-3,1e-400, 1E+2]}"#,
    "[]",
    r#""x""#,
    r#"{"a":-0}"#,
    r#"{"n":12345678901234567890123}"#,
    r#"{"n":-9223372036854775808,"m":-9223372036854775809}"#,
    r#"{"a":{"a":{"a":1}},"b":{"a":2}}"#,
    r#"{"a":1,"a":2}"#,
    r#"{"a":1,"\u0061":2}"#,
    "{}",
    "null",
];
const EXTRAS: &[&str] = &[
    "1e400",
    "-0",
    "1.0",
    "123456789012345678901234567890",
    "0.1",
    "-12",
    "true",
    "false",
    "null",
    r#""x""#,
    "[1,[2,[3]]]",
    r#"{"nested":{"deep":[{"x":null}]}}"#,
    "2666666666666666666666666666666666666666666666666666666666666666666666666666666666",
];

/// One member, its key possibly escaped.
fn member(name: &'static str, values: &'static [&'static str]) -> impl Strategy<Value = String> {
    (pick(values), any::<bool>(), any::<u8>()).prop_map(move |(v, escape, at)| {
        let key = if escape {
            let i = usize::from(at) % name.len();
            let c = name.as_bytes()[i];
            format!("{}\\u{:04x}{}", &name[..i], c, &name[i + 1..])
        } else {
            name.to_owned()
        };
        format!("\"{key}\":{v}")
    })
}

fn deep() -> impl Strategy<Value = String> {
    (1usize..20, any::<bool>()).prop_map(|(n, obj)| {
        if obj {
            format!(
                "{}1{}",
                "{\"d\":[".repeat(n / 2 + 1),
                "]}".repeat(n / 2 + 1)
            )
        } else {
            format!("{}1{}", "[".repeat(n), "]".repeat(n))
        }
    })
}

fn unknown() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(&["x", "custom", "\\u0000", "é", "iss2", "a b"][..]);
    let value = prop_oneof![pick(EXTRAS), pick(OBJECTS), deep()];
    (name, value).prop_map(|(n, v)| format!("\"{n}\":{v}"))
}

/// A claims object: each claim present or not, from good and bad values, in any order, with
/// duplicates, unknown claims and odd whitespace.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let members = (
        (
            proptest::option::weighted(0.9, member("iss", STRINGS)),
            proptest::option::weighted(0.9, member("sub", STRINGS)),
            proptest::option::weighted(0.9, member("aud", AUDS)),
            proptest::option::weighted(0.9, member("iat", TIMES)),
            proptest::option::weighted(0.9, member("exp", TIMES)),
            proptest::option::weighted(0.3, member("nbf", TIMES)),
            proptest::option::weighted(0.9, member("jti", STRINGS)),
        ),
        (
            proptest::option::weighted(0.5, member("txn", TXNS)),
            proptest::option::weighted(0.9, member("cls", CLASSES)),
            proptest::option::weighted(0.7, member("scope", SCOPES)),
            proptest::option::weighted(0.4, member("req_wl", STRINGS)),
            proptest::option::weighted(0.5, member("act", ACTORS)),
            proptest::option::weighted(0.2, member("cnf", CNFS)),
            proptest::option::weighted(0.3, member("tctx", OBJECTS)),
            proptest::option::weighted(0.3, member("rctx", OBJECTS)),
        ),
        proptest::collection::vec(unknown(), 0..3),
    );
    (
        members,
        any::<u64>(),
        0usize..4,
        proptest::sample::select(&["", " ", "\n\t ", "  "][..]),
    )
        .prop_map(
            |(((a, b, c, d, e, f, g), (h, i, j, k, l, m, n, o), extra), seed, dups, ws)| {
                let mut v: Vec<String> = [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o]
                    .into_iter()
                    .flatten()
                    .chain(extra)
                    .collect();
                // A deterministic shuffle and some duplicates.
                let len = v.len().max(1);
                for i in 0..v.len() {
                    let j = (seed as usize).wrapping_mul(31).wrapping_add(i * 7) % len;
                    v.swap(i, j);
                }
                for i in 0..dups.min(v.len()) {
                    if (seed >> i) & 1 == 1 {
                        let d = v[(seed as usize >> 8).wrapping_add(i) % v.len()].clone();
                        v.push(d);
                    }
                }
                format!("{ws}{{{ws}{}{ws}}}{ws}", v.join(&format!("{ws},{ws}"))).into_bytes()
            },
        )
}

/// Byte-level damage: delete, insert or replace bytes.
fn mutate(bytes: Vec<u8>, edits: Vec<(u16, u8, u8)>) -> Vec<u8> {
    let mut b = bytes;
    for (at, op, byte) in edits {
        if b.is_empty() {
            break;
        }
        let i = usize::from(at) % b.len();
        let byte = [
            b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'e', 0xff, 0x01, byte,
        ][usize::from(byte) % 14];
        match op % 3 {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, byte),
            _ => b[i] = byte,
        }
    }
    b
}

const HEADERS: &[&str] = &[
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"application/TxnToken+JWT"}"#,
    r#"{"alg":"HS256","kid":"k1"}"#,
    r#"{"alg":"HS256","kid":"k\u0031","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","crit":["exp"]}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","zip":null}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","b64":1e400}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","jku":"https://evil","x":{"y":[1]}}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","kid":"k1"}"#,
    r#"{"alg":"HS256","kid":7,"typ":"txntoken+jwt","crit":1}"#,
    r#"{"crit":1,"alg":"HS256","kid":7}"#,
    r#"{"alg":null,"kid":"k1","typ":"txntoken+jwt"}"#,
    r#"{"alg":"none","kid":"k1","typ":"txntoken+jwt"}"#,
    r#"{"alg":"ES512","kid":"k1","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS384","kid":"k1","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","kid":"k2","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","kid":null,"typ":"txntoken+jwt"}"#,
    r#"{"alg":"HS256","kid":"k1","typ":null}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","a":1,"a":2}"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt"} "#,
    r#"[{"alg":"HS256"}]"#,
    r#"{"alg":"HS256","kid":"k1","typ":"txntoken+jwt","d":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}"#,
];

/// A good payload for the token tests: time and class right, so verification gets far.
fn good_payload() -> &'static str {
    r#"{"iss":"https://gw.mesh.test","sub":"user:alice","aud":"mesh.test","iat":1700000000,"exp":1700000180,"jti":"j1","cls":"fast","scope":"read:orders/* create:orders","act":{"sub":"spiffe://mesh.test/gateway"}}"#
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn claims_generated(p in payload()) {
        same_claims(&p);
    }

    #[test]
    fn claims_mutated(p in payload(), edits in proptest::collection::vec(any::<(u16, u8, u8)>(), 1..4)) {
        same_claims(&mutate(p, edits));
    }

    #[test]
    fn claims_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        same_claims(&b);
    }

    #[test]
    fn tokens_generated(
        h in proptest::sample::select(HEADERS),
        p in prop_oneof![payload(), Just(good_payload().as_bytes().to_vec())],
        edits in proptest::collection::vec(any::<(u16, u8, u8)>(), 0..2),
    ) {
        let t = sign(h, &mutate(p, edits));
        same_token(&t);
    }

    #[test]
    fn headers_mutated(
        h in proptest::sample::select(HEADERS),
        edits in proptest::collection::vec(any::<(u16, u8, u8)>(), 1..3),
    ) {
        let h = mutate(h.as_bytes().to_vec(), edits);
        let t = jws::sign_with_raw_header(&key(), &h, good_payload().as_bytes()).unwrap();
        same_token(&t);
    }

    /// Damage to the encoded token: non-canonical base64 (trailing bits), other alphabets,
    /// padding, dots, whitespace.
    #[test]
    fn tokens_damaged(
        h in proptest::sample::select(HEADERS),
        edits in proptest::collection::vec((any::<u16>(), 0u8..3, proptest::sample::select(&[b'.', b'=', b'+', b'/', b' ', b'A', b'B', b'Q', b'_', b'-', b'g'][..])), 1..3),
    ) {
        let mut t = sign(h, good_payload().as_bytes()).into_bytes();
        for (at, op, byte) in edits {
            let i = usize::from(at) % t.len();
            match op {
                0 => { t.remove(i); }
                1 => t.insert(i, byte),
                _ => t[i] = byte,
            }
            if t.is_empty() { break; }
        }
        same_token(std::str::from_utf8(&t).unwrap());
    }
}

#[test]
fn fixed_cases() {
    for p in [
        good_payload(),
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":{"fast":null}}"#,
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast","act":["a",["b"]]}"#,
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast","cnf":["x"]}"#,
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast","x":1e400}"#,
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast","x":1e400,"y":}"#,
        r#"{"iat":"x","sub":""}"#,
        r#"{"scope":"read","iss":"i"}"#,
        r#"{"iss":"i","sub":"u","aud":"a","iat":1,"exp":2,"jti":"j","cls":"fast","scope":"read","iss":1}"#,
    ] {
        same_claims(p.as_bytes());
        same_token(&sign(HEADERS[0], p.as_bytes()));
    }
    let many = format!(
        "{{{}}}",
        (0..40)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    same_claims(many.as_bytes());
    same_claims(format!("{},\"k7\":0}}", &many[..many.len() - 1]).as_bytes());
    same_token("a.b.c.d");
    same_token("..");
    same_token("");
}

//! The cache against a model: a random sequence of mints, verifications, tampered tokens, time
//! steps (forward and back), revocations and clears. Verifying through the cache must give
//! exactly the answer of the verifier alone, every time, whatever the cache holds or evicted.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use secmesh_core::{ExpiryClass, ManualClock};
use secmesh_tokens::cache::{Admission, TokenHash, VerifiedCache};
use secmesh_tokens::{
    Algorithm, Issuer, KeySet, MintRequest, RevocationList, SigningKey, Verifier,
};

const NOW: u64 = 1_800_000_000;

#[derive(Clone, Debug)]
enum Op {
    Mint { medium: bool },
    Verify(usize),
    Tamper(usize, usize),
    Step(i64),
    Revoke(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|medium| Op::Mint { medium }),
        8 => any::<usize>().prop_map(Op::Verify),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(t, i)| Op::Tamper(t, i)),
        2 => (-120i64..400).prop_map(Op::Step),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => Just(Op::Clear),
    ]
}

fn run(ops: &[Op], capacity: usize, admission: Admission) -> Result<(), TestCaseError> {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[3; 32]).unwrap();
    let revoked = RevocationList::new();
    let verifier = Arc::new(
        Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))))
            .audience("aud")
            .clock(clock.clone())
            .revocation(Arc::new(revoked.clone())),
    );
    let issuer = Issuer::new(key, "k", "iss")
        .audience("aud")
        .clock(clock.clone());
    let cache = VerifiedCache::new(verifier.clone(), capacity).admission(admission);
    let mut now = NOW;
    let mut tokens: Vec<String> = Vec::new();
    let mut verifications = 0u64;
    let check = |token: &str| -> Result<(), TestCaseError> {
        let through_cache = cache.verify(token);
        let alone = verifier.verify(token);
        match (&through_cache, &alone) {
            (Ok(c), Ok(v)) => {
                prop_assert_eq!(c.claims(), v.claims());
                prop_assert_eq!(c.hash(), TokenHash::of(token));
            }
            (Err(c), Err(v)) => prop_assert_eq!(c.kind(), v.kind()),
            _ => prop_assert!(
                false,
                "cache {:?} vs verifier {:?}",
                through_cache.as_ref().map(|c| c.hash()),
                alone.as_ref().map(|v| v.claims().jti.clone())
            ),
        }
        Ok(())
    };
    for op in ops {
        match *op {
            Op::Mint { medium } => {
                let class = if medium {
                    ExpiryClass::Medium
                } else {
                    ExpiryClass::Fast
                };
                let req = MintRequest::new(format!("user:{}", tokens.len()), class)
                    .grant("read", "orders/*")
                    .lifetime(if medium { 600 } else { 120 });
                tokens.push(issuer.mint(&req).unwrap());
            }
            Op::Verify(i) if !tokens.is_empty() => {
                check(&tokens[i % tokens.len()])?;
                verifications += 1;
            }
            Op::Tamper(t, i) if !tokens.is_empty() => {
                let token = &tokens[t % tokens.len()];
                let mut bytes = token.as_bytes().to_vec();
                let i = i % bytes.len();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                check(&String::from_utf8(bytes).unwrap())?;
                verifications += 1;
            }
            Op::Step(secs) => {
                now = now.saturating_add_signed(secs).max(NOW - 1_000);
                clock.set(now);
            }
            Op::Revoke(i) if !tokens.is_empty() => {
                let t = &tokens[i % tokens.len()];
                if let Ok(v) = verifier.verify(t) {
                    revoked.revoke_jti(v.claims().jti.clone());
                }
            }
            Op::Clear => cache.clear(),
            _ => {}
        }
        let s = cache.stats();
        prop_assert!(s.entries <= capacity, "{:?}", s);
    }
    let s = cache.stats();
    prop_assert_eq!(s.hits + s.misses, verifications);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_cache_answers_as_the_verifier_alone(
        ops in prop::collection::vec(op(), 1..120),
        capacity in 1usize..12,
        always in any::<bool>(),
    ) {
        let admission = if always { Admission::Always } else { Admission::SeenTwice };
        run(&ops, capacity, admission)?;
    }
}

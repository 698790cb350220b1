//! The verified-token cache from the outside: what hits, what does not, what it keeps.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh_core::{ExpiryClass, ManualClock};
use secmesh_tokens::cache::{Admission, TokenHash, VerifiedCache};
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{
    Algorithm, ErrorKind, Issuer, KeySet, MintRequest, RevocationList, SigningKey, Verifier,
};

const NOW: u64 = 1_800_000_000;

struct Fixture {
    issuer: Issuer,
    verifier: Arc<Verifier>,
    clock: Arc<ManualClock>,
}

fn fixture(alg: Algorithm) -> Fixture {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = if alg == Algorithm::Hs256 {
        SigningKey::from_hmac_secret(alg, &[7; 32]).unwrap()
    } else {
        SigningKey::generate(alg).unwrap()
    };
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))))
        .issuer("https://sts.mesh.test")
        .audience("mesh.test")
        .clock(clock.clone());
    let issuer = Issuer::new(key, "k", "https://sts.mesh.test")
        .audience("mesh.test")
        .clock(clock.clone());
    Fixture {
        issuer,
        verifier: Arc::new(verifier),
        clock,
    }
}

/// A realistic token: two grants, an actor, the usual claims (~600 bytes).
fn mint(issuer: &Issuer, sub: &str) -> String {
    issuer
        .mint(
            &MintRequest::new(sub, ExpiryClass::Fast)
                .grant("read", "orders/*")
                .grant("create", "orders")
                .actor("spiffe://mesh.test/gateway")
                .req_wl("spiffe://mesh.test/frontend"),
        )
        .unwrap()
}

/// Replace the byte at `i` with another base64url character (same length).
fn with_byte_changed(token: &str, i: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[i] = match bytes[i] {
        b'A' => b'B',
        b'.' => b'A',
        _ => b'A',
    };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_token_differing_in_one_byte_never_hits() {
    for alg in [Algorithm::Hs256, Algorithm::EdDsa] {
        let f = fixture(alg);
        let cache = VerifiedCache::new(f.verifier.clone(), 100).admission(Admission::Always);
        let token = mint(&f.issuer, "user:alice");
        assert!(token.len() > 500, "{} bytes", token.len());
        cache.verify(&token).unwrap();
        let last = token.len() - 1;
        let sig_start = token.rfind('.').unwrap() + 1;
        let mut positions = vec![0, 1, token.len() / 2, sig_start, last - 1, last];
        positions.extend((0..token.len()).step_by(7));
        for i in positions {
            let forged = with_byte_changed(&token, i);
            assert_ne!(forged, token);
            assert_eq!(forged.len(), token.len());
            let before = cache.stats();
            assert!(cache.verify(&forged).is_err(), "{alg:?}: byte {i} changed");
            let after = cache.stats();
            assert_eq!(after.hits, before.hits, "{alg:?}: byte {i} changed hit");
            assert_eq!(after.misses, before.misses + 1);
        }
        // The real one still hits, with the SHA-256 computed on the miss.
        let hit = cache.verify(&token).unwrap();
        assert_eq!(hit.hash(), TokenHash::of(&token));
        assert_eq!(hit.claims().sub, "user:alice");
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().entries, 1);
        // A prefix or an extension of it does not hit either.
        assert!(cache.verify(&token[..last]).is_err());
        assert!(cache.verify(&format!("{token}A")).is_err());
        assert_eq!(cache.stats().hits, 1);
    }
}

#[test]
fn a_flood_of_one_off_tokens_is_bounded_and_counted() {
    let f = fixture(Algorithm::Hs256);
    let always = VerifiedCache::new(f.verifier.clone(), 64).admission(Admission::Always);
    let door = VerifiedCache::new(f.verifier.clone(), 64);
    let n = 2_000u64;
    for i in 0..n {
        let t = mint(&f.issuer, &format!("user:{i}"));
        always.verify(&t).unwrap();
        door.verify(&t).unwrap();
    }
    let s = always.stats();
    assert_eq!((s.entries, s.misses, s.hits), (64, n, 0));
    assert_eq!(s.evictions, n - 64);
    assert_eq!(s.admissions_refused, 0);

    // The doorkeeper keeps one-off tokens out (a false positive of its filter lets a few in).
    let s = door.stats();
    assert!(s.entries <= 64);
    assert_eq!(s.misses, n);
    assert_eq!(
        s.admissions_refused + s.entries as u64 + s.evictions,
        n,
        "{s:?}"
    );
    assert!(s.admissions_refused >= n * 3 / 4, "{s:?}");
}

#[test]
fn a_hot_token_survives_a_flood() {
    let f = fixture(Algorithm::Hs256);
    for admission in [Admission::Always, Admission::SeenTwice] {
        let cache = VerifiedCache::new(f.verifier.clone(), 64).admission(admission);
        let hot = mint(&f.issuer, "user:hot");
        cache.verify(&hot).unwrap();
        cache.verify(&hot).unwrap();
        let base = cache.stats();
        for i in 0..1_000 {
            let t = mint(&f.issuer, &format!("user:{i}"));
            cache.verify(&t).unwrap();
            cache.verify(&hot).unwrap();
        }
        let s = cache.stats();
        assert_eq!(s.hits - base.hits, 1_000, "{admission:?}: {s:?}");
        assert!(s.entries <= 64);
    }
}

#[test]
fn seen_twice_caches_the_second_verification_and_never_a_failure() {
    let f = fixture(Algorithm::Hs256);
    let cache = VerifiedCache::new(f.verifier.clone(), 100);
    assert_eq!(
        VerifiedCache::new(f.verifier.clone(), 1)
            .admission(Admission::default())
            .stats(),
        VerifiedCache::new(f.verifier.clone(), 1).stats()
    );
    let token = mint(&f.issuer, "user:alice");
    let first = cache.verify(&token).unwrap();
    assert_eq!(first.hash(), TokenHash::of(&token));
    let s = cache.stats();
    assert_eq!((s.entries, s.admissions_refused, s.misses), (1 - 1, 1, 1));
    cache.verify(&token).unwrap();
    assert_eq!(cache.stats().entries, 1);
    let third = cache.verify(&token).unwrap();
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(third.claims(), first.claims());
    assert_eq!(third.hash(), first.hash());

    // A token that fails is never cached, however often it is presented.
    let expired = {
        let t = mint(&f.issuer, "user:bob");
        f.clock.advance(180 + 60);
        t
    };
    for _ in 0..3 {
        assert_eq!(
            cache.verify(&expired).unwrap_err().kind(),
            ErrorKind::Expired
        );
    }
    // And the cached one expired with it: dropped on its next hit.
    assert_eq!(cache.verify(&token).unwrap_err().kind(), ErrorKind::Expired);
    let s = cache.stats();
    assert_eq!((s.entries, s.hits), (0, 2));
}

#[test]
fn revocation_and_clear_apply_to_cached_tokens() {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let revoked = RevocationList::new();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))))
        .clock(clock.clone())
        .revocation(Arc::new(revoked.clone()));
    let issuer = Issuer::new(key, "k", "iss").audience("aud").clock(clock);
    let cache = VerifiedCache::new(Arc::new(verifier), 10).admission(Admission::Always);
    let a = mint(&issuer, "user:a");
    let b = mint(&issuer, "user:b");
    cache.verify(&a).unwrap();
    cache.verify(&b).unwrap();
    assert!(cache.verify(&a).is_ok() && cache.verify(&b).is_ok());
    assert_eq!(cache.stats().hits, 2);
    revoked.revoke_kid("k");
    assert_eq!(cache.verify(&a).unwrap_err().kind(), ErrorKind::Revoked);
    assert_eq!(cache.stats().entries, 1);
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.verify(&b).unwrap_err().kind(), ErrorKind::Revoked);
}

#[test]
fn two_threads_share_the_cache() {
    let f = fixture(Algorithm::Hs256);
    let cache = Arc::new(VerifiedCache::new(f.verifier.clone(), 50).admission(Admission::Always));
    let tokens: Arc<Vec<(String, String)>> = Arc::new(
        (0..100)
            .map(|i| {
                let sub = format!("user:{i}");
                (mint(&f.issuer, &sub), sub)
            })
            .collect(),
    );
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (cache, tokens) = (cache.clone(), tokens.clone());
            std::thread::spawn(move || {
                for round in 0..20 {
                    for (i, (token, sub)) in tokens.iter().enumerate() {
                        // Thread 1 walks a hot subset more often.
                        if t == 1 && round % 2 == 0 && i >= 20 {
                            break;
                        }
                        let v = cache.verify(token).unwrap();
                        assert_eq!(v.claims().sub, sub.as_str());
                        assert_eq!(v.hash(), TokenHash::of(token));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(s.hits + s.misses, 20 * 100 + 10 * 100 + 10 * 20);
    assert!(s.entries <= 50);
    assert!(s.hits > 0);
}

/// Verify `token` until this thread holds it in its front: a miss, a hit through its shard
/// (the first sighting on this thread), a hit through its shard that copies it into the
/// front, then a hit from the front.
fn make_resident(cache: &VerifiedCache, token: &str) {
    for _ in 0..4 {
        cache.verify(token).unwrap();
    }
}

#[test]
fn a_token_in_the_threads_front_is_rechecked_on_every_hit() {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[9; 32]).unwrap();
    let revoked = RevocationList::new();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))))
        .clock(clock.clone())
        .revocation(Arc::new(revoked.clone()));
    let issuer = Issuer::new(key, "k", "iss")
        .audience("aud")
        .clock(clock.clone());
    let cache = VerifiedCache::new(Arc::new(verifier), 10).admission(Admission::Always);
    let a = mint(&issuer, "user:a");
    let b = mint(&issuer, "user:b");
    make_resident(&cache, &a);
    make_resident(&cache, &b);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (6, 2, 2));
    // Every byte still counts on a front hit.
    for i in [0, a.len() / 2, a.len() - 1] {
        assert!(cache.verify(&with_byte_changed(&a, i)).is_err());
    }
    assert_eq!(cache.stats().hits, 6);
    assert_eq!(cache.verify(&a).unwrap().hash(), TokenHash::of(&a));
    assert_eq!(cache.verify(&a).unwrap().claims().sub, "user:a");
    assert_eq!(cache.stats().hits, 8);

    // Revoked: refused from the front, and the entry leaves its shard.
    let jti = cache.verify(&a).unwrap().claims().jti.clone();
    revoked.revoke_jti(jti);
    assert_eq!(cache.verify(&a).unwrap_err().kind(), ErrorKind::Revoked);
    assert_eq!(cache.stats().entries, 1);
    assert_eq!(cache.verify(&a).unwrap_err().kind(), ErrorKind::Revoked);

    // Expired: the same.
    clock.advance(180 + 60);
    assert_eq!(cache.verify(&b).unwrap_err().kind(), ErrorKind::Expired);
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.verify(&b).unwrap_err().kind(), ErrorKind::Expired);
}

#[test]
fn clear_and_a_removed_key_reach_the_threads_front() {
    let clock = Arc::new(ManualClock::new(NOW));
    let old = SigningKey::from_hmac_secret(Algorithm::Hs256, &[1; 32]).unwrap();
    let new = SigningKey::from_hmac_secret(Algorithm::Hs256, &[2; 32]).unwrap();
    let source = Arc::new(KeySource::fixed(KeySet::single(
        old.verifying_key(Some("old".into())),
    )));
    let verifier = Verifier::with_source(source.clone()).clock(clock.clone());
    let issuer = Issuer::new(old, "old", "iss").audience("aud").clock(clock);
    let cache = VerifiedCache::new(Arc::new(verifier), 10).admission(Admission::Always);
    let token = mint(&issuer, "user:a");
    make_resident(&cache, &token);
    // Cleared: the next verification is a miss.
    cache.clear();
    let misses = cache.stats().misses;
    cache.verify(&token).unwrap();
    assert_eq!(cache.stats().misses, misses + 1);
    make_resident(&cache, &token);
    // The key is rotated out and the cache cleared (as a key-set change calls for): the
    // token no longer verifies, from the front or anywhere.
    source.replace(KeySet::single(new.verifying_key(Some("new".into()))));
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
    assert!(cache.verify(&token).is_err());
    assert!(cache.verify(&token).is_err());
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn an_entry_evicted_from_its_shard_leaves_every_front() {
    let f = fixture(Algorithm::Hs256);
    let cache = VerifiedCache::new(f.verifier.clone(), 1).admission(Admission::Always);
    let a = mint(&f.issuer, "user:a");
    let b = mint(&f.issuer, "user:b");
    make_resident(&cache, &a);
    // Another thread evicts it (capacity 1).
    std::thread::scope(|s| {
        s.spawn(|| cache.verify(&b).unwrap());
    });
    let before = cache.stats();
    assert_eq!(before.evictions, 1);
    cache.verify(&a).unwrap();
    let after = cache.stats();
    assert_eq!(after.misses, before.misses + 1, "{after:?}");
    assert_eq!(after.hits, before.hits);
    assert_eq!(after.entries, 1);
}

#[test]
fn a_clear_on_one_thread_reaches_anothers_front() {
    let f = fixture(Algorithm::Hs256);
    let cache = VerifiedCache::new(f.verifier.clone(), 10).admission(Admission::Always);
    let token = mint(&f.issuer, "user:a");
    let (to_worker, work) = std::sync::mpsc::channel::<()>();
    let (done, from_worker) = std::sync::mpsc::channel::<(u64, u64)>();
    let (cache, token) = (&cache, &token);
    std::thread::scope(|s| {
        s.spawn(move || {
            while work.recv().is_ok() {
                let before = cache.stats();
                make_resident(cache, token);
                let after = cache.stats();
                done.send((after.hits - before.hits, after.misses - before.misses))
                    .unwrap();
            }
        });
        to_worker.send(()).unwrap();
        assert_eq!(from_worker.recv().unwrap(), (3, 1));
        to_worker.send(()).unwrap();
        assert_eq!(from_worker.recv().unwrap(), (4, 0));
        cache.clear();
        to_worker.send(()).unwrap();
        assert_eq!(from_worker.recv().unwrap(), (3, 1));
        drop(to_worker);
    });
}

#[test]
fn two_caches_on_one_thread_do_not_answer_for_each_other() {
    let f = fixture(Algorithm::Hs256);
    let other = Arc::new(
        Verifier::new(KeySet::single(
            SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32])
                .unwrap()
                .verifying_key(Some("k".into())),
        ))
        .issuer("https://sts.mesh.test")
        .audience("elsewhere.test")
        .clock(f.clock.clone()),
    );
    let here = VerifiedCache::new(f.verifier.clone(), 10).admission(Admission::Always);
    let there = VerifiedCache::new(other, 10).admission(Admission::Always);
    let token = mint(&f.issuer, "user:a");
    make_resident(&here, &token);
    // The other verifier wants another audience: the token held in this thread's front for
    // the first cache does not pass through the second.
    for _ in 0..4 {
        assert!(there.verify(&token).is_err());
        assert!(here.verify(&token).is_ok());
    }
    assert_eq!(there.stats().hits, 0);
    // Without the front the answers are the same.
    let plain = VerifiedCache::new(f.verifier.clone(), 10)
        .admission(Admission::Always)
        .per_thread(false);
    make_resident(&plain, &token);
    assert_eq!(plain.stats().hits, 3);
}

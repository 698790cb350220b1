//! The revocation set: each kind of revocation, expiry and bounds, resync, and the verifier and
//! the verified-token cache asking it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh_core::{Clock, ExpiryClass, ManualClock, TxnId};
use secmesh_tokens::cache::VerifiedCache;
use secmesh_tokens::revocation::{RevocationError, RevocationKey, RevocationSet, Revoked};
use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};

const NOW: u64 = 1_800_000_000;

struct F {
    clock: Arc<ManualClock>,
    issuer: Issuer,
    set: Arc<RevocationSet>,
    verifier: Arc<Verifier>,
}

fn f() -> F {
    let clock = Arc::new(ManualClock::new(NOW));
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let set = Arc::new(RevocationSet::new().clock(clock.clone()));
    let verifier = Arc::new(
        Verifier::new(keys)
            .clock(clock.clone())
            .revocation(set.clone()),
    );
    let issuer = Issuer::new(key, "k1", "https://sts.test")
        .audience("mesh.test")
        .clock(clock.clone());
    F {
        clock,
        issuer,
        set,
        verifier,
    }
}

impl F {
    fn mint(&self, sub: &str) -> String {
        self.issuer
            .mint(&MintRequest::new(sub, ExpiryClass::Medium))
            .unwrap()
    }

    fn revoked(&self, token: &str) -> bool {
        match self.verifier.verify(token) {
            Ok(_) => false,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Revoked);
                true
            }
        }
    }
}

#[test]
fn each_kind_revokes_what_it_names_and_nothing_else() {
    let f = f();
    let (a1, a2, b) = (
        f.mint("user:alice"),
        f.mint("user:alice"),
        f.mint("user:bob"),
    );
    let claims = |t: &str| f.verifier.verify(t).unwrap().into_inner();
    let (c1, cb) = (claims(&a1), claims(&b));

    f.set
        .revoke(RevocationKey::Jti(c1.jti.clone()), None)
        .unwrap();
    assert!(f.revoked(&a1) && !f.revoked(&a2) && !f.revoked(&b));

    f.set
        .revoke(RevocationKey::Txn(cb.txn.unwrap()), Some("fraud".into()))
        .unwrap();
    assert!(f.revoked(&b) && !f.revoked(&a2));

    // A subject: every token issued up to now; tokens issued later pass.
    f.set
        .revoke(RevocationKey::Sub("user:alice".into()), None)
        .unwrap();
    assert!(f.revoked(&a2));
    f.clock.advance(1);
    let later = f.mint("user:alice");
    assert!(!f.revoked(&later));

    // A key: everything it signed.
    f.set.revoke(RevocationKey::Kid("k1".into()), None).unwrap();
    assert!(f.revoked(&later) && f.revoked(&f.mint("user:carol")));
    assert_eq!(f.set.len(), 4);
}

#[test]
fn entries_expire_and_the_set_stays_bounded() {
    let f = f();
    let set = RevocationSet::new()
        .clock(f.clock.clone())
        .retention(100)
        .max_entries(3);
    for i in 0..3 {
        set.revoke(RevocationKey::Jti(format!("j{i}")), None)
            .unwrap();
    }
    // Full with live entries: refused, never a silent eviction.
    assert_eq!(
        set.revoke(RevocationKey::Jti("j3".into()), None),
        Err(RevocationError::Full(3))
    );
    // The same key again is an update, not a new entry.
    assert!(set.revoke(RevocationKey::Jti("j0".into()), None).is_ok());
    f.clock.advance(101);
    assert_eq!(set.purge(), 3);
    assert!(set.is_empty());
    assert!(set.revoke(RevocationKey::Jti("j3".into()), None).is_ok());
    // An entry already over is ignored; empty and oversized values are refused.
    let mut stale = set.revoke(RevocationKey::Jti("x".into()), None).unwrap();
    stale.key = RevocationKey::Jti("old".into());
    stale.until = f.clock.now_unix();
    set.insert(stale).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(
        set.revoke(RevocationKey::Jti(String::new()), None),
        Err(RevocationError::InvalidValue)
    );
    assert_eq!(
        set.revoke(RevocationKey::Sub("u".repeat(257)), None),
        Err(RevocationError::InvalidValue)
    );
}

#[test]
fn a_resync_replaces_everything_and_keeps_the_latest_time() {
    let f = f();
    let a = f.mint("user:alice");
    let ca = f.verifier.verify(&a).unwrap().into_inner();
    f.set
        .revoke(RevocationKey::Jti("gone".into()), None)
        .unwrap();
    let sub = |at: u64| Revoked::new(RevocationKey::Sub("user:alice".into()), at, at + 1000);
    // Two entries for one subject: the later time wins (tokens up to it are revoked).
    let left_out = f.set.replace_all([sub(NOW - 10), sub(NOW)]);
    assert_eq!(left_out, 0);
    assert_eq!(
        f.set.len(),
        1,
        "the jti the source no longer holds is dropped"
    );
    assert!(f.revoked(&a));
    assert!(ca.iat <= NOW);
    let entries = f.set.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].at, NOW);
    // Entries serialize for a replica stream and read back.
    let json = serde_json::to_string(&entries[0]).unwrap();
    assert!(json.contains(r#""kind":"sub""#), "{json}");
    assert_eq!(serde_json::from_str::<Revoked>(&json).unwrap(), entries[0]);
    let txn: TxnId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
    let t = serde_json::to_string(&RevocationKey::Txn(txn)).unwrap();
    assert_eq!(
        t,
        r#"{"kind":"txn","value":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
    );
}

#[test]
fn cache_hits_are_revoked_too() {
    let f = f();
    let cache = VerifiedCache::new(f.verifier.clone(), 100);
    let t = f.mint("user:alice");
    assert!(cache.verify(&t).is_ok());
    assert!(cache.verify(&t).is_ok(), "a hit");
    f.set
        .revoke(RevocationKey::Sub("user:alice".into()), None)
        .unwrap();
    assert_eq!(cache.verify(&t).unwrap_err().kind(), ErrorKind::Revoked);
}

//! The key ring on real directories: the timing rules of rotation, restart, the files'
//! permissions, hostile state and key files, and the Issuer following rotations.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secmesh_core::{ClassBounds, ExpiryClass, ManualClock};
use secmesh_tokens::keyring::{
    KeyRing, KeyRingError, KeyState, RingConfig, STATE_FILE, StateError, jwk_thumbprint,
};
use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};

const T0: u64 = 1_700_000_000;
const ISS: &str = "https://sts.mesh.test";

fn ring(dir: &std::path::Path, clock: &ManualClock, alg: Algorithm) -> KeyRing {
    let config = RingConfig::default().alg(alg).issuer(ISS).max_cache(600);
    KeyRing::init(dir, config, Arc::new(clock.clone())).unwrap()
}

fn verifier(keys: KeySet, clock: &ManualClock) -> Verifier {
    Verifier::new(keys)
        .issuer(ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()))
}

/// The published set, through the strict JWKS parser.
fn published(ring: &KeyRing) -> KeySet {
    KeySet::from_jwks_json(&ring.publication().jwks).unwrap()
}

fn kids(ring: &KeyRing) -> Vec<(String, KeyState)> {
    ring.publication().kids.clone()
}

#[test]
fn init_publishes_current_and_next_in_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let ring_dir = dir.path().join("ring");
    let clock = ManualClock::new(T0);
    for alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let d = ring_dir.join(alg.as_str());
        let r = ring(&d, &clock, alg);
        let p = r.publication();
        assert_eq!(p.max_age, 600);
        let states: Vec<KeyState> = p.kids.iter().map(|k| k.1).collect();
        assert_eq!(states, [KeyState::Current, KeyState::Next]);
        let set = published(&r);
        assert_eq!(set.len(), 2);
        // Kids are RFC 7638 thumbprints of the published keys.
        for jwk in &set.to_jwks().keys {
            assert_eq!(jwk.kid, jwk_thumbprint(jwk));
            assert_eq!(jwk.alg.as_deref(), Some(alg.as_str()));
            assert!(jwk.d.is_none(), "no private member is published");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&d), 0o700);
            let mut files = 0;
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
            assert_eq!(
                files, 3,
                "the state file and two key files, no temporary left"
            );
        }
        assert!(matches!(
            KeyRing::init(&d, RingConfig::default(), Arc::new(clock.clone())),
            Err(KeyRingError::Exists { .. })
        ));
    }
    assert!(matches!(
        KeyRing::init(
            dir.path().join("hs"),
            RingConfig::default().alg(Algorithm::Hs256),
            Arc::new(clock)
        ),
        Err(KeyRingError::Algorithm { .. })
    ));
}

#[test]
fn rotation_waits_one_max_cache_period_and_the_issuer_follows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let r = ring(dir.path(), &clock, Algorithm::EdDsa);
    let issuer = Issuer::from_ring(&r, ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()));
    let first = issuer.kid();
    let next = r.state().next().unwrap().kid.clone();
    let before = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();

    clock.advance(599);
    match r.rotate(false) {
        Err(e @ KeyRingError::TooEarly { .. }) => {
            assert!(e.is_refusal());
            let KeyRingError::TooEarly {
                kid,
                published_for,
                ready_at,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (kid, published_for, ready_at),
                (next.clone(), 599, T0 + 600)
            );
        }
        other => panic!("expected TooEarly, got {other:?}"),
    }
    assert_eq!(issuer.kid(), first, "a refused rotation changes nothing");

    clock.advance(1);
    let rot = r.rotate(false).unwrap();
    assert_eq!(rot.retired.as_deref(), Some(first.as_str()));
    assert_eq!(rot.current, next);
    assert!(rot.removed.is_empty());
    assert_eq!(
        issuer.kid(),
        next,
        "the issuer signs with the new key at once"
    );
    let after = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    assert_ne!(
        before.split('.').next(),
        after.split('.').next(),
        "another kid in the header"
    );

    // The published set verifies tokens signed before and after the rotation.
    let v = verifier(published(&r), &clock);
    assert_eq!(v.verify(&before).unwrap().kid(), Some(first.as_str()));
    assert_eq!(v.verify(&after).unwrap().kid(), Some(next.as_str()));
    let states: Vec<KeyState> = kids(&r).iter().map(|k| k.1).collect();
    assert_eq!(
        states,
        [KeyState::Current, KeyState::Next, KeyState::Retired]
    );

    // A forced rotation does not wait.
    let forced = r.rotate(true).unwrap();
    assert_eq!(issuer.kid(), forced.current);
    assert_eq!(r.state().keys.len(), 4);
}

#[test]
fn a_retired_key_leaves_only_after_its_tokens_can_have_expired() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let bounds = ClassBounds::default();
    let config = RingConfig::default()
        .issuer(ISS)
        .max_cache(300)
        .retain_for(&bounds, 60);
    let r = KeyRing::init(dir.path(), config, Arc::new(clock.clone())).unwrap();
    let issuer = Issuer::from_ring(&r, ISS)
        .audience("mesh.test")
        .clock(Arc::new(clock.clone()));
    let old = issuer.kid();

    clock.advance(300);
    // The last token of the old key: a slow one, signed in the second of the rotation.
    let slow = issuer
        .mint(&MintRequest::new("user:batch", ExpiryClass::Slow))
        .unwrap();
    let retired_at = clock.now_unix();
    r.rotate(false).unwrap();

    // Still published (and verifying) through its whole lifetime plus the skew.
    clock.set(retired_at + 86_400 + 60 - 1);
    assert!(
        kids(&r)
            .iter()
            .any(|(k, s)| *k == old && *s == KeyState::Retired)
    );
    let v = verifier(published(&r), &clock);
    assert!(v.verify(&slow).is_ok(), "within the verifier's skew");

    // Then gone from the published set, and pruned with its file.
    clock.set(retired_at + 86_400 + 60);
    assert!(kids(&r).iter().all(|(k, _)| *k != old));
    let v = verifier(published(&r), &clock);
    assert_eq!(v.verify(&slow).unwrap_err().kind(), ErrorKind::UnknownKid);
    assert_eq!(r.prune().unwrap(), std::slice::from_ref(&old));
    assert!(!dir.path().join(format!("key-{old}.pem")).exists());
    assert!(r.prune().unwrap().is_empty());
}

use secmesh_core::Clock as _;

#[test]
fn a_restart_keeps_the_states_and_another_process_sees_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let r = ring(dir.path(), &clock, Algorithm::Es256);
    clock.advance(600);
    r.rotate(false).unwrap();
    let before = r.state();
    drop(r);

    let again = KeyRing::open(dir.path(), Arc::new(clock.clone())).unwrap();
    assert_eq!(again.state(), before);
    assert_eq!(again.issuer().as_deref(), Some(ISS));

    // A second handle on the same directory (another process: `keys serve`).
    let server = KeyRing::open(dir.path(), Arc::new(clock.clone())).unwrap();
    let issuer = Issuer::from_ring(&server, ISS).audience("mesh.test");
    assert!(!server.reload().unwrap(), "nothing changed yet");
    clock.advance(600);
    let rot = again.rotate(false).unwrap();
    assert_ne!(server.current_kid(), rot.current);
    assert!(server.reload().unwrap());
    assert_eq!(server.current_kid(), rot.current);
    assert_eq!(issuer.kid(), rot.current);
    assert_eq!(server.publication().etag, again.publication().etag);

    // The older handle rotates from the state on disk, not from its stale copy.
    clock.advance(600);
    let third = server.rotate(false).unwrap();
    assert_eq!(third.retired.as_deref(), Some(rot.current.as_str()));
}

#[test]
fn the_schedule_helper_rotates_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let r = ring(dir.path(), &clock, Algorithm::EdDsa);
    assert!(r.maintain(3600).unwrap().is_none());
    clock.advance(3599);
    assert!(r.maintain(3600).unwrap().is_none());
    clock.advance(1);
    let rot = r.maintain(3600).unwrap().unwrap();
    assert_eq!(r.current_kid(), rot.current);
    assert!(r.maintain(3600).unwrap().is_none());
}

#[test]
fn hostile_state_and_key_files_are_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let r = KeyRing::init(dir.path(), RingConfig::default(), clock.clone()).unwrap();
    let state_path = dir.path().join(STATE_FILE);
    let good = std::fs::read_to_string(&state_path).unwrap();
    let cur = r.current_kid();
    let next = r.state().next().unwrap().kid.clone();

    let write = |text: &str| std::fs::write(&state_path, text).unwrap();
    // A kid that would reach another path.
    write(&good.replace(&cur, "../../etc/passwd"));
    assert!(matches!(
        KeyRing::open(dir.path(), clock.clone()),
        Err(KeyRingError::State {
            source: StateError::BadKid,
            ..
        })
    ));
    // Two current keys.
    write(&good.replace("\"next\"", "\"current\""));
    assert!(matches!(
        KeyRing::open(dir.path(), clock.clone()),
        Err(KeyRingError::State {
            source: StateError::States(_) | StateError::Times { .. },
            ..
        })
    ));
    // A reload that fails keeps the ring as it was.
    assert!(r.reload().is_err());
    assert_eq!(r.current_kid(), cur);
    // The two keys' files swapped: each file holds another key than its kid names.
    write(&good);
    let (a, b) = (
        dir.path().join(format!("key-{cur}.pem")),
        dir.path().join(format!("key-{next}.pem")),
    );
    let tmp = dir.path().join("swap");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    assert!(matches!(
        KeyRing::open(dir.path(), clock.clone()),
        Err(KeyRingError::Key { .. })
    ));
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyRing::open(dir.path(), clock.clone()),
            Err(KeyRingError::InsecureKeyFile { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // A missing ring, a state file that is a directory.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        KeyRing::open(empty.path(), clock.clone()),
        Err(KeyRingError::NotFound { .. })
    ));
    std::fs::create_dir(empty.path().join(STATE_FILE)).unwrap();
    assert!(matches!(
        KeyRing::open(empty.path(), clock.clone()),
        Err(KeyRingError::File(_))
    ));
    assert!(KeyRing::open(dir.path(), clock).is_ok());
}

#[test]
fn an_existing_key_is_imported_and_debug_shows_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let public = key.verifying_key(None).to_jwk();
    let r = KeyRing::import(
        dir.path(),
        RingConfig::default(),
        Arc::new(clock.clone()),
        SigningKey::from_pkcs8_pem(Algorithm::Es256, &pem).unwrap(),
    )
    .unwrap();
    assert_eq!(Some(r.current_kid()), jwk_thumbprint(&public));
    assert_eq!(r.state().alg, Algorithm::Es256);
    let shown = format!("{r:?} {:?}", Issuer::from_ring(&r, ISS));
    let secret_line = pem.lines().nth(1).unwrap();
    assert!(!shown.contains(&secret_line[..20]), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}

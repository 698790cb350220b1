//! The revocation check on the hot path (issue 16's measure): a token that is not revoked,
//! asked of a set holding 100,000 revoked tokens, beside subjects, transactions and keys, and
//! of the former `RevocationList` with the same 100,000 jtis, in the same run.
//!
//! ```text
//! cargo bench -p secmesh-tokens --bench revocation
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use secmesh_core::{ExpiryClass, TxnId};
use secmesh_tokens::revocation::{RevocationKey, RevocationSet};
use secmesh_tokens::{Algorithm, Issuer, MintRequest, Revocation, RevocationList, SigningKey};

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let issuer = Issuer::new(key, "k1", "https://sts.test").audience("mesh.test");
    let claims = issuer
        .claims_for(&MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/**"))
        .unwrap();

    let jtis_only = RevocationSet::new();
    let mixed = RevocationSet::new();
    let list = RevocationList::new();
    for i in 0..100_000u32 {
        let jti = format!("{i:022}");
        jtis_only
            .revoke(RevocationKey::Jti(jti.clone()), None)
            .unwrap();
        mixed.revoke(RevocationKey::Jti(jti.clone()), None).unwrap();
        list.revoke_jti(jti);
    }
    for i in 0..1_000u32 {
        mixed
            .revoke(RevocationKey::Sub(format!("user:u{i}")), None)
            .unwrap();
        let txn: TxnId = format!("{:032x}", i + 1).parse().unwrap();
        mixed.revoke(RevocationKey::Txn(txn), None).unwrap();
        mixed
            .revoke(RevocationKey::Kid(format!("kid-{i}")), None)
            .unwrap();
    }

    let mut g = c.benchmark_group("revocation");
    g.bench_function("set_100k_jti", |b| {
        b.iter(|| black_box(jtis_only.is_revoked(black_box(&claims), Some("k1"))))
    });
    g.bench_function("set_100k_jti_and_sub_txn_kid", |b| {
        b.iter(|| black_box(mixed.is_revoked(black_box(&claims), Some("k1"))))
    });
    g.bench_function("empty_set", |b| {
        let empty = RevocationSet::new();
        b.iter(|| black_box(empty.is_revoked(black_box(&claims), Some("k1"))))
    });
    g.bench_function("former_list_100k_jti", |b| {
        b.iter(|| black_box(list.is_revoked(black_box(&claims), Some("k1"))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

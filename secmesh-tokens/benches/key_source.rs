//! Verifying through a key source against a static key set, in the same run.
//!
//! ```text
//! cargo bench -p secmesh-tokens --features remote --bench key_source
//! ```
//! Rows (EdDSA, the same token):
//! - `key_source/static_keyset`: `Verifier::new(KeySet)`, as users who load keys themselves
//!   write it (a fixed source inside);
//! - `key_source/fixed_source`: `Verifier::with_source(KeySource::fixed(..))`;
//! - `key_source/remote_source`: `Verifier::with_source` a source fetched from a JWKS server on
//!   127.0.0.1 (refreshed in the background; the hot path reads the swapped set and checks the
//!   staleness deadline).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use secmesh_core::ExpiryClass;
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};

const ISS: &str = "https://gw.mesh.test";

/// A JWKS server on a std thread; its URL.
fn serve(jwks: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncache-control: max-age=3600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    url
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let jwks = keys.to_jwks().to_json();
    let token = Issuer::new(key, "k1", ISS)
        .audience("mesh.test")
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium).grant("read", "orders/*"))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let remote = runtime
        .block_on(KeySource::jwks_url(serve(jwks)).allow_http(true).build())
        .unwrap();
    let verifiers = [
        ("static_keyset", Verifier::new(keys.clone())),
        (
            "fixed_source",
            Verifier::with_source(Arc::new(KeySource::fixed(keys))),
        ),
        ("remote_source", Verifier::with_source(remote)),
    ];
    let mut g = c.benchmark_group("key_source");
    for (name, verifier) in &verifiers {
        let verifier = verifier.clone().issuer(ISS).audience("mesh.test");
        assert!(verifier.verify(&token).is_ok());
        g.bench_function(*name, |b| {
            b.iter(|| verifier.verify(black_box(&token)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

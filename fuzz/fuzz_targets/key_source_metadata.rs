#![no_main]

// The OIDC / RFC 8414 metadata document: `issuer` compared byte for byte, `jwks_uri` taken
// only from a document naming the expected issuer; and the well-known URLs of any issuer.
use libfuzzer_sys::fuzz_target;
use secmesh_tokens::source::SourceError;
use secmesh_tokens::source::response::{jwks_uri_from_metadata, metadata_urls};

fuzz_target!(|data: &[u8]| {
    // The first line is the expected issuer, the rest the document.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let issuer = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    match jwks_uri_from_metadata(body, &issuer) {
        Ok(uri) => {
            assert!(!uri.is_empty());
            let doc: serde_json::Value = serde_json::from_slice(body).expect("accepted JSON");
            assert_eq!(doc["issuer"].as_str(), Some(&*issuer));
        }
        Err(SourceError::IssuerMismatch { expected, found }) => assert_ne!(expected, found),
        Err(_) => {}
    }
    if let Ok([oidc, oauth]) = metadata_urls(&issuer) {
        assert!(oidc.ends_with("/.well-known/openid-configuration"));
        assert!(oauth.contains("/.well-known/oauth-authorization-server"));
    }
});

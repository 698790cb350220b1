//! [`JwksLayer`]: the configuration, checked when it is built.

use std::sync::Arc;

use bytes::Bytes;
use secmesh_tokens::keyring::KeyRing;
use tower_layer::Layer;

use super::service::{Jwks, NotFound};
use super::{JWKS_PATH, OAUTH_METADATA_PATH, OPENID_CONFIGURATION_PATH};

/// Why a [`JwksLayer`] setting was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksConfigError {
    /// The issuer is not an `https://` (or `http://`) URL without query, fragment or
    /// whitespace.
    #[error("the issuer must be an https:// URL without query or fragment")]
    InvalidIssuer,
    /// The `jwks_uri` is not an `https://` (or `http://`) URL without fragment or whitespace.
    #[error("jwks_uri must be an https:// URL without fragment")]
    InvalidJwksUri,
}

/// The metadata document and where it is served.
#[derive(Debug)]
pub(super) struct Metadata {
    pub(super) paths: Vec<String>,
    pub(super) body: Bytes,
    pub(super) etag: String,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) ring: Arc<KeyRing>,
    pub(super) metadata: Option<Metadata>,
}

impl Shared {
    pub(super) fn is_ours(&self, path: &str) -> bool {
        path == JWKS_PATH
            || self
                .metadata
                .as_ref()
                .is_some_and(|m| m.paths.iter().any(|p| p == path))
    }
}

/// Serves a key ring's JWKS and the issuer's metadata; see the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct JwksLayer {
    shared: Arc<Shared>,
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// `scheme://authority` and the path of an http(s) URL, if it is one we accept.
fn split_url(url: &str, allow_query: bool) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    if url.len() > 2048
        || url.contains('#')
        || (!allow_query && url.contains('?'))
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    let origin_len = url.len() - rest.len() + host_end;
    Some((&url[..origin_len], &url[origin_len..]))
}

impl JwksLayer {
    /// Serve `ring`'s published keys; with the issuer recorded in the ring (if any) the
    /// metadata too.
    pub fn new(ring: Arc<KeyRing>) -> JwksLayer {
        let issuer = ring.issuer();
        let layer = JwksLayer {
            shared: Arc::new(Shared {
                ring,
                metadata: None,
            }),
            issuer: None,
            jwks_uri: None,
        };
        match issuer {
            Some(iss) => match layer.clone().issuer(iss) {
                Ok(with) => with,
                // An issuer the ring recorded that is no URL: serve the keys alone.
                Err(_) => layer,
            },
            None => layer,
        }
    }

    /// The issuer the metadata names (instead of the ring's).
    pub fn issuer(mut self, iss: impl Into<String>) -> Result<JwksLayer, JwksConfigError> {
        let iss = iss.into();
        split_url(&iss, false).ok_or(JwksConfigError::InvalidIssuer)?;
        self.issuer = Some(iss);
        Ok(self.rebuild())
    }

    /// The `jwks_uri` the metadata names (by default the issuer's origin with
    /// `/.well-known/jwks.json`): where verifiers reach this endpoint when it is published
    /// under another name.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Result<JwksLayer, JwksConfigError> {
        let uri = uri.into();
        split_url(&uri, true).ok_or(JwksConfigError::InvalidJwksUri)?;
        self.jwks_uri = Some(uri);
        Ok(self.rebuild())
    }

    fn rebuild(mut self) -> JwksLayer {
        let metadata = self.issuer.as_deref().and_then(|iss| {
            let (origin, path) = split_url(iss, false)?;
            let jwks_uri = self
                .jwks_uri
                .clone()
                .unwrap_or_else(|| format!("{origin}{JWKS_PATH}"));
            let doc = serde_json::json!({ "issuer": iss, "jwks_uri": jwks_uri });
            let body = Bytes::from(doc.to_string());
            let digest = secmesh_tokens::crypto::sha256(&body);
            let mut paths = vec![
                OAUTH_METADATA_PATH.to_owned(),
                OPENID_CONFIGURATION_PATH.to_owned(),
            ];
            let path = path.trim_end_matches('/');
            if !path.is_empty() {
                paths.push(format!("{OAUTH_METADATA_PATH}{path}"));
                paths.push(format!("{path}{OPENID_CONFIGURATION_PATH}"));
            }
            Some(Metadata {
                paths,
                body,
                etag: format!("\"{}\"", hex(&digest[..16])),
            })
        });
        self.shared = Arc::new(Shared {
            ring: self.shared.ring.clone(),
            metadata,
        });
        self
    }

    /// The standalone endpoint: these documents, `404` for anything else.
    pub fn service(&self) -> Jwks<NotFound> {
        self.layer(NotFound)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<S> Layer<S> for JwksLayer {
    type Service = Jwks<S>;

    fn layer(&self, inner: S) -> Jwks<S> {
        Jwks::new(inner, self.shared.clone())
    }
}

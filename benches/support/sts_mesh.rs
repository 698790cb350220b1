//! The Txn-Token Service set up as in `secmesh-tower/tests/sts.rs`, for the `sts` and
//! `sts_load` benches: a key ring, one IdP with an EdDSA and an ES256 key, the exchange policy,
//! a realistic IdP access token and Txn-Token Request, and the floor of one exchange (one
//! verification of the subject token plus one signature of the issued claims).

// Each bench uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use secmesh::core::claims::{Claims, JsonMap, Scope};
use secmesh::core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh::core::exchange_policy::ExchangePolicy;
use secmesh::core::{Clock, SystemClock};
use secmesh::tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh::tokens::jws::sign_compact;
use secmesh::tokens::keyring::{KeyRing, RingConfig};
use secmesh::tokens::source::KeySource;
use secmesh::tokens::{Algorithm, Issuer, KeySet, SigningKey};
use secmesh_tower::sts::Sts;
use serde_json::json;

pub(crate) const IDP: &str = "https://idp.mesh.test";
pub(crate) const ISS: &str = "https://sts.mesh.test";
pub(crate) const TD: &str = "mesh.test";
pub(crate) const GATEWAY: &str = "spiffe://mesh.test/gateway";
pub(crate) const ORDERS: &str = "spiffe://mesh.test/orders";

const POLICY: &str = r#"
[[exchange]]
id = "gateway-exchanges-user-tokens"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token", "id_token"]
issuers = ["https://idp.mesh.test"]
subjects = ["user:*"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}/**", "create:orders/{sub}/*/dispute", "read:payments/{sub}/**"]
max_class = "fast"

[[exchange]]
id = "services-replace"
effect = "allow"
workloads = ["spiffe://mesh.test/orders", "spiffe://mesh.test/reconciler"]
subject_token_types = ["txn_token"]
audiences = ["mesh.test"]
scopes = ["*:**"]
max_class = "slow"

[[exchange]]
id = "no-banned-users"
effect = "deny"
workloads = ["*"]
subject_token_types = ["*"]
subjects = ["user:mallory"]
audiences = ["*"]
"#;

/// The service, its key ring, the IdP's keys and verifier.
pub(crate) struct StsMesh {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) sts: Sts,
    /// Signs with the ring's current key, as the service does (the floor's signature).
    pub(crate) issuer: Issuer,
    /// The IdP's verifier, as the service holds it (the floor's verification).
    pub(crate) idp: Arc<IdpVerifier>,
    idp_ed: SigningKey,
    idp_es: SigningKey,
}

impl StsMesh {
    /// A service whose ring signs with `ring_alg`.
    pub(crate) fn new(ring_alg: Algorithm) -> StsMesh {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(
            KeyRing::init(
                dir.path().join("ring"),
                RingConfig::default().alg(ring_alg),
                Arc::new(SystemClock),
            )
            .unwrap(),
        );
        let idp_ed = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let idp_es = SigningKey::generate(Algorithm::Es256).unwrap();
        let mut keys = KeySet::new();
        keys.insert(idp_ed.verifying_key(Some("idp-ed".into())))
            .unwrap();
        keys.insert(idp_es.verifying_key(Some("idp-es".into())))
            .unwrap();
        let idps = IdpVerifiers::new().issuer(IdpVerifier::new(
            Arc::new(KeySource::fixed(keys)),
            IDP,
            "gateway",
        ));
        let idp = idps.get(IDP).unwrap().clone();
        let sts = Sts::builder(&ring, ISS, TD)
            .policy(ExchangePolicy::from_toml(POLICY).unwrap())
            .idps(idps)
            .build()
            .unwrap();
        let issuer = Issuer::from_ring(&ring, ISS).audience(TD);
        StsMesh {
            dir,
            sts,
            issuer,
            idp,
            idp_ed,
            idp_es,
        }
    }

    /// An IdP access token for `alice` signed with the IdP's `alg` key (EdDSA or ES256): the
    /// claims an OIDC provider puts in an access token, 10 minutes of lifetime.
    pub(crate) fn idp_token(&self, alg: Algorithm) -> String {
        let (key, kid) = match alg {
            Algorithm::EdDsa => (&self.idp_ed, "idp-ed"),
            Algorithm::Es256 => (&self.idp_es, "idp-es"),
            other => panic!("no IdP key for {other:?}"),
        };
        let now = SystemClock.now_unix();
        let claims = json!({
            "iss": IDP, "sub": "alice", "aud": "gateway", "iat": now, "exp": now + 600,
            "jti": "2f7c1a0e-5b8d-4c1e-9f3a-6d2b8e4a7c91", "client_id": "web-shop",
            "auth_time": now - 30, "acr": "urn:mace:incommon:iap:silver",
            "scope": "openid profile orders payments",
        });
        sign_compact(
            key,
            Some(kid),
            Some("at+jwt"),
            claims.to_string().as_bytes(),
        )
        .unwrap()
    }

    /// The gateway's Txn-Token Request for `subject_token` (an IdP access token): one order,
    /// with the client's address and authentication in `request_context` and the action in
    /// `request_details`.
    pub(crate) fn ask(subject_token: &str) -> TxnTokenRequest {
        let mut ctx = JsonMap::new();
        ctx.insert("req_ip".into(), "69.151.72.123".into());
        ctx.insert("authn".into(), "urn:ietf:rfc:6749".into());
        let mut details = JsonMap::new();
        details.insert("action".into(), "read-order".into());
        TxnTokenRequest::new(
            TD,
            Scope::new("read:orders/{sub}/42").unwrap(),
            SubjectToken::new(subject_token),
            SubjectTokenType::AccessToken,
        )
        .request_context(ctx)
        .request_details(details)
    }

    /// The floor of an IdP-token exchange: verify `subject_token` with the IdP's verifier, sign
    /// `claims` (those the exchange issues) with the ring's key.
    pub(crate) fn floor(&self, subject_token: &str, claims: &Claims) -> String {
        let verified = self.idp.verify(subject_token).unwrap();
        std::hint::black_box(verified);
        self.issuer.sign_claims(claims).unwrap()
    }
}

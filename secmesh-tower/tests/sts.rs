//! The Txn-Token Service over real mutual TLS on 127.0.0.1: every RFC 6749 error from a real
//! request, the exchange policy, replacements that try to widen, IdP tokens that should not
//! pass, hostile bodies, and the audit log of it all (chained, signed, verified).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_audit::Auditor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::{read_events, verify_files};
use secmesh_core::claims::Scope;
use secmesh_core::exchange::{
    ErrorCode, ExchangeError, SubjectToken, SubjectTokenType, TxnTokenRequest, TxnTokenResponse,
};
use secmesh_core::exchange_policy::ExchangePolicy;
use secmesh_core::{ExpiryClass, SystemClock};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh_tokens::jws::sign_compact;
use secmesh_tokens::keyring::{KeyRing, RingConfig};
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{Algorithm, Claims, KeySet, SigningKey, Verified};
use secmesh_tower::sts::{Sts, TxnTokenService};
use secmesh_tower::tls::{TlsConnector, TlsServer};
use serde_json::json;

const IDP: &str = "https://idp.mesh.test";
const TD: &str = "mesh.test";

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
id = "reconciler-starts-batches"
effect = "allow"
workloads = ["spiffe://mesh.test/reconciler"]
subject_token_types = ["unsigned_json", "self_signed"]
audiences = ["mesh.test"]
scopes = ["create:orders/batch/**"]
max_class = "slow"

[[exchange]]
id = "gateway-profiles-with-the-profile-scope"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token"]
issuers = ["https://idp.mesh.test"]
subject_scopes = ["profile"]
audiences = ["mesh.test"]
scopes = ["read:profiles/{sub}"]

[[exchange]]
id = "no-banned-users"
effect = "deny"
workloads = ["*"]
subject_token_types = ["*"]
subjects = ["user:mallory"]
audiences = ["*"]
"#;

struct Mesh {
    dir: tempfile::TempDir,
    ca: Ca,
    idp_key: SigningKey,
    sts: Sts,
    ring: Arc<KeyRing>,
    addr: SocketAddr,
    auditor: Auditor,
    audit_key: AuditKey,
    log: PathBuf,
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn workload(dir: &Path, ca: &Ca, name: &str) -> Workload {
    let issued = ca
        .issue(&format!("spiffe://{TD}/{name}").parse().unwrap(), 1)
        .unwrap();
    std::fs::write(path(dir, &format!("{name}.crt")), &issued.cert_pem).unwrap();
    std::fs::write(path(dir, &format!("{name}.key")), &issued.key_pem).unwrap();
    Workload::load(TlsFiles::new(
        path(dir, &format!("{name}.crt")),
        path(dir, &format!("{name}.key")),
        path(dir, "ca/ca.crt"),
    ))
    .unwrap()
}

async fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), TD.parse().unwrap()).unwrap();
    let ring = Arc::new(
        KeyRing::init(
            dir.path().join("ring"),
            RingConfig::default(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let idp_key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let idp_keys = KeySet::single(idp_key.verifying_key(Some("idp-1".into())));
    let idps = IdpVerifiers::new().issuer(IdpVerifier::new(
        Arc::new(KeySource::fixed(idp_keys)),
        IDP,
        "gateway",
    ));
    let audit_key = AuditKey::generate().unwrap();
    let log = dir.path().join("sts.jsonl");
    let sink = JsonLinesSink::open(
        &log,
        JsonLinesConfig::default().with_key(AuditKey::from_pem(&audit_key.to_pem()).unwrap()),
    )
    .unwrap();
    let auditor = Auditor::builder(sink).spawn();
    let sts = Sts::builder(&ring, "https://sts.mesh.test", TD)
        .policy(ExchangePolicy::from_toml(POLICY).unwrap())
        .idps(idps)
        .auditor(auditor.clone(), "sts")
        .build()
        .unwrap();
    let server = workload(dir.path(), &ca, "sts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Optional client auth, so that a client without a certificate reaches the endpoint
    // and gets invalid_client (a deployment would require it in the handshake).
    tokio::spawn(
        TlsServer::new(server.server_config(ClientAuth::Optional))
            .serve(listener, TxnTokenService::<String>::new(sts.clone())),
    );
    Mesh {
        dir,
        ca,
        idp_key,
        sts,
        ring,
        addr,
        auditor,
        audit_key,
        log,
    }
}

type HttpsClient = Client<TlsConnector, Full<Bytes>>;

impl Mesh {
    fn client(&self, name: &str) -> HttpsClient {
        let w = workload(self.dir.path(), &self.ca, name);
        Client::builder(TokioExecutor::new()).build(TlsConnector::new(w.client_config(
            ServerId::exact(format!("spiffe://{TD}/sts").parse().unwrap()),
        )))
    }

    fn idp_token(&self, sub: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
        let now = SystemClock.now_unix();
        let mut c = json!({"iss": IDP, "sub": sub, "aud": "gateway", "iat": now,
                           "exp": now + 600, "scope": "orders"});
        f(&mut c);
        sign_compact(
            &self.idp_key,
            Some("idp-1"),
            Some("at+jwt"),
            c.to_string().as_bytes(),
        )
        .unwrap()
    }

    async fn post(
        &self,
        client: &HttpsClient,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let req = Request::post(format!("https://{}/token", self.addr))
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body.into()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    async fn exchange(
        &self,
        client: &HttpsClient,
        request: &TxnTokenRequest,
    ) -> Result<TxnTokenResponse, ExchangeError> {
        let (status, headers, body) = self
            .post(
                client,
                "application/x-www-form-urlencoded",
                request.to_form(),
            )
            .await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        if status == StatusCode::OK {
            Ok(TxnTokenResponse::from_json(&body).unwrap())
        } else {
            let e = ExchangeError::from_json(&body).unwrap();
            assert_eq!(e.status(), status.as_u16());
            Err(e)
        }
    }

    fn verify(&self, token: &str) -> Verified<Claims> {
        self.sts.verifier().verify(token).unwrap()
    }
}

use secmesh_core::Clock;

fn ask(scope: &str, token: &str, kind: SubjectTokenType) -> TxnTokenRequest {
    TxnTokenRequest::new(
        TD,
        Scope::new(scope).unwrap(),
        SubjectToken::new(token),
        kind,
    )
}

fn code(r: Result<TxnTokenResponse, ExchangeError>) -> ErrorCode {
    r.unwrap_err().code()
}

#[tokio::test]
async fn an_idp_token_becomes_a_narrow_fast_txn_token() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let mut ctx = secmesh_core::claims::JsonMap::new();
    ctx.insert("req_ip".into(), "69.151.72.123".into());
    ctx.insert("authn".into(), "urn:ietf:rfc:6749".into());
    let mut details = secmesh_core::claims::JsonMap::new();
    details.insert("action".into(), "read-order".into());
    let request = ask(
        "read:orders/{sub}/42",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    )
    .request_context(ctx)
    .request_details(details);
    let issued = m.exchange(&gateway, &request).await.unwrap();
    assert_eq!(
        issued.issued_scope(),
        None,
        "not narrowed: no scope in the response"
    );
    assert_eq!(issued.expires_in_secs(), Some(180));
    let claims = m.verify(issued.access_token());
    assert_eq!(claims.sub.as_str(), "user:alice");
    assert_eq!(claims.iss, "https://sts.mesh.test");
    assert!(claims.aud.contains(TD));
    assert_eq!(claims.cls, ExpiryClass::Fast);
    assert_eq!(claims.req_wl.as_deref(), Some("spiffe://mesh.test/gateway"));
    assert!(claims.txn.is_some());
    assert_eq!(
        claims.scope.as_ref().unwrap().as_str(),
        "read:orders/{sub}/42"
    );
    // request_context lands in rctx, request_details in tctx.
    let rctx = claims.rctx.as_ref().unwrap();
    assert_eq!(rctx["req_ip"], "69.151.72.123");
    assert_eq!(claims.tctx.as_ref().unwrap()["action"], "read-order");

    // Asking wider than the policy: narrowed to what the policy allows, and said so.
    let wide = ask(
        "read:orders/**",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    );
    let issued = m.exchange(&gateway, &wide).await.unwrap();
    assert_eq!(
        issued.issued_scope().unwrap().as_str(),
        "read:orders/{sub}/**"
    );
    let claims = m.verify(issued.access_token());
    assert_eq!(
        claims.scope.as_ref().unwrap().as_str(),
        "read:orders/{sub}/**"
    );
    // Each exchange is its own transaction.
    let again = m.exchange(&gateway, &request).await.unwrap();
    assert_ne!(
        m.verify(again.access_token()).txn,
        m.verify(issued.access_token()).txn
    );
}

#[tokio::test]
async fn every_error_code_from_a_real_request() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let good = || {
        ask(
            "read:orders/{sub}/1",
            &m.idp_token("alice", |_| {}),
            SubjectTokenType::AccessToken,
        )
    };

    // invalid_request: a required parameter missing.
    let form = good().to_form().replace("audience=mesh.test&", "");
    let (status, _, body) = m
        .post(&gateway, "application/x-www-form-urlencoded", form)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        ExchangeError::from_json(&body).unwrap().code(),
        ErrorCode::InvalidRequest
    );
    // unsupported_grant_type.
    let form = good().to_form().replace("token-exchange", "jwt-bearer");
    let (status, _, body) = m
        .post(&gateway, "application/x-www-form-urlencoded", form)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        ExchangeError::from_json(&body).unwrap().code(),
        ErrorCode::UnsupportedGrantType
    );
    // invalid_client: no client certificate (401).
    let anonymous: HttpsClient =
        Client::builder(TokioExecutor::new()).build(TlsConnector::new(Arc::new(
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer))
                .with_no_client_auth(),
        )));
    assert_eq!(
        code(m.exchange(&anonymous, &good()).await),
        ErrorCode::InvalidClient
    );
    // unauthorized_client: a workload the policy does not know; a denied subject.
    let payments = m.client("payments");
    assert_eq!(
        code(m.exchange(&payments, &good()).await),
        ErrorCode::UnauthorizedClient
    );
    let mallory = ask(
        "read:orders/{sub}/1",
        &m.idp_token("mallory", |_| {}),
        SubjectTokenType::AccessToken,
    );
    assert_eq!(
        code(m.exchange(&gateway, &mallory).await),
        ErrorCode::UnauthorizedClient
    );
    // A token type this workload may not present.
    let own = ask("read:orders/{sub}/1", "{}", SubjectTokenType::UnsignedJson);
    assert_eq!(
        code(m.exchange(&gateway, &own).await),
        ErrorCode::UnauthorizedClient
    );
    // invalid_scope: nothing of what is asked is allowed; a class slower than allowed.
    let other = ask(
        "delete:orders/{sub}/1",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    );
    assert_eq!(
        code(m.exchange(&gateway, &other).await),
        ErrorCode::InvalidScope
    );
    assert_eq!(
        code(
            m.exchange(&gateway, &good().class(ExpiryClass::Medium))
                .await
        ),
        ErrorCode::InvalidScope
    );
    // invalid_target: another trust domain.
    let mut elsewhere = good();
    elsewhere.audience = "other.test".into();
    assert_eq!(
        code(m.exchange(&gateway, &elsewhere).await),
        ErrorCode::InvalidTarget
    );
    // invalid_grant: see subject_tokens_that_must_not_pass.
    let forged = ask(
        "read:orders/{sub}/1",
        "eyJhbGciOiJub25lIn0.e30.",
        SubjectTokenType::AccessToken,
    );
    assert_eq!(
        code(m.exchange(&gateway, &forged).await),
        ErrorCode::InvalidGrant
    );
    // Other methods: 405.
    let res = gateway
        .request(
            Request::get(format!("https://{}/token", m.addr))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn subject_tokens_that_must_not_pass() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let now = SystemClock.now_unix();
    let bad = [
        m.idp_token("alice", |c| c["iss"] = json!("https://evil.test")),
        m.idp_token("alice", |c| {
            c["iat"] = json!(now - 7200);
            c["exp"] = json!(now - 3600);
        }),
        m.idp_token("alice", |c| c["aud"] = json!("billing")),
        // Another key under the IdP's kid.
        {
            let other = SigningKey::generate(Algorithm::EdDsa).unwrap();
            let c =
                json!({"iss": IDP, "sub": "alice", "aud": "gateway", "iat": now, "exp": now + 60});
            sign_compact(
                &other,
                Some("idp-1"),
                Some("at+jwt"),
                c.to_string().as_bytes(),
            )
            .unwrap()
        },
        // A mesh txn-token presented as an access token.
        m.sts
            .exchange(
                "spiffe://mesh.test/reconciler",
                &ask(
                    "create:orders/batch/1",
                    "{}",
                    SubjectTokenType::UnsignedJson,
                ),
            )
            .await
            .unwrap()
            .token,
        // Subjects that would not be plain mesh subjects.
        m.idp_token("alice bob", |_| {}),
        m.idp_token("*", |_| {}),
        m.idp_token("alice/../bob", |_| {}),
        m.idp_token("{sub}", |_| {}),
    ];
    for token in bad {
        let r = ask("read:orders/{sub}/1", &token, SubjectTokenType::AccessToken);
        assert_eq!(
            code(m.exchange(&gateway, &r).await),
            ErrorCode::InvalidGrant
        );
    }
}

#[tokio::test]
async fn replacements_only_narrow() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let orders = m.client("orders");
    let first = m
        .exchange(
            &gateway,
            &ask(
                "read:orders/{sub}/7 read:payments/{sub}/7",
                &m.idp_token("alice", |_| {}),
                SubjectTokenType::AccessToken,
            ),
        )
        .await
        .unwrap();
    let original = m.verify(first.access_token());
    let replace = |scope: &str| ask(scope, first.access_token(), SubjectTokenType::TxnToken);

    let narrower = m
        .exchange(&orders, &replace("read:payments/{sub}/7"))
        .await
        .unwrap();
    let claims = m.verify(narrower.access_token());
    assert_eq!(
        (claims.sub.as_str(), claims.txn),
        (original.sub.as_str(), original.txn)
    );
    assert_eq!(claims.cls, ExpiryClass::Fast);
    assert_eq!(claims.req_wl.as_deref(), Some("spiffe://mesh.test/orders"));
    assert_eq!(
        claims.rctx.as_ref().unwrap()["req_wl_chain"][0],
        "spiffe://mesh.test/gateway"
    );

    // Wider than the original, slower than the original, another trust domain: refused.
    assert_eq!(
        code(m.exchange(&orders, &replace("read:payments/**")).await),
        ErrorCode::InvalidScope
    );
    assert_eq!(
        code(m.exchange(&orders, &replace("read:orders/{sub}/8")).await),
        ErrorCode::InvalidScope
    );
    assert_eq!(
        code(
            m.exchange(
                &orders,
                &replace("read:orders/{sub}/7").class(ExpiryClass::Slow)
            )
            .await
        ),
        ErrorCode::InvalidScope
    );
    let mut elsewhere = replace("read:orders/{sub}/7");
    elsewhere.audience = "other.test".into();
    assert_eq!(
        code(m.exchange(&orders, &elsewhere).await),
        ErrorCode::InvalidTarget
    );
    // The gateway may not replace (policy), a replacement of a replacement keeps the chain.
    assert_eq!(
        code(m.exchange(&gateway, &replace("read:orders/{sub}/7")).await),
        ErrorCode::UnauthorizedClient
    );
    let again = m
        .exchange(
            &m.client("reconciler"),
            &ask(
                "read:payments/{sub}/7",
                narrower.access_token(),
                SubjectTokenType::TxnToken,
            ),
        )
        .await
        .unwrap();
    let claims = m.verify(again.access_token());
    assert_eq!(claims.txn, original.txn);
    assert_eq!(
        claims.rctx.as_ref().unwrap()["req_wl_chain"],
        json!(["spiffe://mesh.test/gateway", "spiffe://mesh.test/orders"])
    );
    // A replacement never carries a sub or txn the request could choose: they are the
    // original's whatever the request says.
    let forged = first.access_token().to_owned() + "x";
    assert_eq!(
        code(
            m.exchange(
                &orders,
                &ask("read:orders/{sub}/7", &forged, SubjectTokenType::TxnToken)
            )
            .await
        ),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn the_subject_tokens_own_scope_is_a_condition() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let r = |token: &str| ask("read:profiles/{sub}", token, SubjectTokenType::AccessToken);
    // The IdP token's scope is "orders": no profile.
    assert_eq!(
        code(
            m.exchange(&gateway, &r(&m.idp_token("alice", |_| {})))
                .await
        ),
        ErrorCode::InvalidScope
    );
    let with = m.idp_token("alice", |c| c["scope"] = json!("orders profile"));
    let issued = m.exchange(&gateway, &r(&with)).await.unwrap();
    assert_eq!(
        m.verify(issued.access_token())
            .scope
            .as_ref()
            .unwrap()
            .as_str(),
        "read:profiles/{sub}"
    );
}

#[tokio::test]
async fn what_the_request_may_not_decide() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    // The txn-token never outlives the external token it was exchanged for.
    let now = SystemClock.now_unix();
    let short = m.idp_token("alice", |c| c["exp"] = json!(now + 30));
    let issued = m
        .exchange(
            &gateway,
            &ask("read:orders/{sub}/1", &short, SubjectTokenType::AccessToken),
        )
        .await
        .unwrap();
    let claims = m.verify(issued.access_token());
    assert!(claims.exp <= now + 31, "{} > {}", claims.exp, now + 30);
    // The chain of requesters is the service's to write.
    let mut ctx = secmesh_core::claims::JsonMap::new();
    ctx.insert("req_wl_chain".into(), json!(["spiffe://mesh.test/admin"]));
    let forged = ask(
        "read:orders/{sub}/1",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    )
    .request_context(ctx);
    assert_eq!(
        code(m.exchange(&gateway, &forged).await),
        ErrorCode::InvalidRequest
    );
    // A context too large for a token the mesh would verify.
    let mut big = secmesh_core::claims::JsonMap::new();
    big.insert("note".into(), json!("x".repeat(20_000)));
    let r = ask(
        "read:orders/{sub}/1",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    )
    .request_context(big);
    assert_eq!(
        code(m.exchange(&gateway, &r).await),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn a_workload_starts_its_own_transaction() {
    let m = mesh().await;
    let reconciler = m.client("reconciler");
    let r = ask(
        "create:orders/batch/2026-12",
        "{}",
        SubjectTokenType::UnsignedJson,
    )
    .class(ExpiryClass::Slow);
    let issued = m.exchange(&reconciler, &r).await.unwrap();
    let claims = m.verify(issued.access_token());
    assert_eq!(claims.sub.as_str(), "spiffe://mesh.test/reconciler");
    assert_eq!(claims.cls, ExpiryClass::Slow);
    // Naming another workload as the subject: refused.
    let other = ask(
        "create:orders/batch/1",
        r#"{"sub":"spiffe://mesh.test/gateway"}"#,
        SubjectTokenType::UnsignedJson,
    );
    assert_eq!(
        code(m.exchange(&reconciler, &other).await),
        ErrorCode::InvalidGrant
    );
    let dup = ask(
        "create:orders/batch/1",
        r#"{"sub":"spiffe://mesh.test/reconciler","sub":"spiffe://mesh.test/gateway"}"#,
        SubjectTokenType::UnsignedJson,
    );
    assert_eq!(
        code(m.exchange(&reconciler, &dup).await),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn hostile_bodies_get_invalid_request_and_nothing_else() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let good = ask(
        "read:orders/{sub}/1",
        &m.idp_token("alice", |_| {}),
        SubjectTokenType::AccessToken,
    )
    .to_form();
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            form,
            format!("{good}&pad={}", "a".repeat(70_000)).into_bytes(),
        ),
        (form, vec![b'a'; 10 << 20]),
        (form, format!("{good}&scope=read%3Aorders%2F1").into_bytes()),
        (form, format!("{good}&x=%FF%FE").into_bytes()),
        (form, [good.as_bytes(), b"&x=\xff"].concat()),
        (
            "application/json",
            br#"{"grant_type":"urn:ietf:params:oauth:grant-type:token-exchange"}"#.to_vec(),
        ),
        ("text/plain", good.clone().into_bytes()),
        (form, "&".repeat(1000).into_bytes()),
    ];
    for (ct, body) in cases {
        let (status, headers, body) = m.post(&gateway, ct, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let e = ExchangeError::from_json(&body).unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        assert!(!String::from_utf8_lossy(&body).contains("eyJ"));
    }
    // The connection is still good for a well-formed request.
    let issued = m.post(&gateway, form, good).await;
    assert_eq!(issued.0, StatusCode::OK);
}

#[tokio::test]
async fn every_exchange_is_audited_and_the_log_verifies() {
    let m = mesh().await;
    let gateway = m.client("gateway");
    let token = m.idp_token("alice", |_| {});
    let ok = m
        .exchange(
            &gateway,
            &ask("read:orders/{sub}/1", &token, SubjectTokenType::AccessToken),
        )
        .await
        .unwrap();
    let refused = m
        .exchange(
            &m.client("payments"),
            &ask("read:orders/{sub}/1", &token, SubjectTokenType::AccessToken),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::UnauthorizedClient);
    let expired = m.idp_token("alice", |c| {
        c["iat"] = json!(1_000);
        c["exp"] = json!(2_000);
    });
    m.exchange(
        &gateway,
        &ask(
            "read:orders/{sub}/1",
            &expired,
            SubjectTokenType::AccessToken,
        ),
    )
    .await
    .unwrap_err();
    m.auditor.clone().shutdown();

    let report = verify_files(&[&m.log], Some(m.audit_key.public_key())).unwrap();
    assert_eq!(report.events, 3);
    let (events, _) = read_events(&[&m.log]).unwrap();
    let granted = &events[0];
    let issued = m.verify(ok.access_token());
    assert_eq!(granted.decision, secmesh_audit::event::Decision::Allow);
    assert_eq!(
        granted.caller.as_deref(),
        Some("spiffe://mesh.test/gateway")
    );
    assert_eq!(granted.sub.as_deref(), Some("user:alice"));
    assert_eq!(granted.txn, issued.txn);
    assert_eq!(granted.jti.as_deref(), Some(issued.jti.as_str()));
    assert_eq!(
        granted.rule.as_deref(),
        Some("gateway-exchanges-user-tokens")
    );
    assert_eq!(
        granted.token_sha256.as_deref(),
        Some(
            secmesh_tokens::cache::TokenHash::of(&token)
                .to_string()
                .as_str()
        )
    );
    assert_eq!(events[1].decision, secmesh_audit::event::Decision::Deny);
    assert_eq!(
        events[1].caller.as_deref(),
        Some("spiffe://mesh.test/payments")
    );
    assert_eq!(
        events[2].reason_kind.as_deref(),
        Some("subject_token_expired")
    );
    // Never a token in the log.
    let text = std::fs::read_to_string(&m.log).unwrap();
    assert!(!text.contains(&token) && !text.contains(ok.access_token()) && !text.contains("eyJ"));
}

#[tokio::test]
async fn the_service_follows_a_rotation() {
    let m = mesh().await;
    let reconciler = m.client("reconciler");
    let batch = || {
        ask(
            "create:orders/batch/1",
            "{}",
            SubjectTokenType::UnsignedJson,
        )
    };
    let before = m.exchange(&reconciler, &batch()).await.unwrap();
    let old_kid = m.verify(before.access_token()).kid().unwrap().to_owned();
    let rotation = m.ring.rotate(true).unwrap();
    let after = m.exchange(&reconciler, &batch()).await.unwrap();
    let new = m.verify(after.access_token());
    assert_eq!(new.kid(), Some(rotation.current.as_str()));
    assert_ne!(new.kid(), Some(old_kid.as_str()));
    // A token of the retired key is still replaced (the retired key stays published).
    let r = ask(
        "create:orders/batch/1",
        before.access_token(),
        SubjectTokenType::TxnToken,
    );
    let replaced = m.exchange(&reconciler, &r).await.unwrap();
    assert_eq!(
        m.verify(replaced.access_token()).kid(),
        Some(rotation.current.as_str())
    );
}

#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

mod client {
    use super::*;
    use secmesh_tower::sts::{StsClient, StsClientError};
    use std::time::Duration;

    fn sts_client(m: &Mesh, name: &str, url: &str, timeout: Duration) -> StsClient {
        let w = workload(m.dir.path(), &m.ca, name);
        StsClient::builder(
            &w,
            ServerId::exact(format!("spiffe://{TD}/sts").parse().unwrap()),
            url,
        )
        .timeout(timeout)
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn exchanges_reuse_one_connection_and_refusals_keep_their_code() {
        let m = mesh().await;
        // A server of its own, to count its connections.
        let server = workload(m.dir.path(), &m.ca, "sts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = TlsServer::new(server.server_config(ClientAuth::Required));
        let stats = tls.stats();
        tokio::spawn(tls.serve(listener, TxnTokenService::<String>::new(m.sts.clone())));
        let client = sts_client(
            &m,
            "gateway",
            &format!("https://{addr}/token"),
            Duration::from_secs(10),
        );
        let mut txns = std::collections::HashSet::new();
        for _ in 0..20 {
            let r = ask(
                "read:orders/{sub}/1",
                &m.idp_token("alice", |_| {}),
                SubjectTokenType::AccessToken,
            );
            let issued = client.exchange(&r).await.unwrap();
            txns.insert(m.verify(issued.access_token()).txn);
        }
        assert_eq!(txns.len(), 20, "each call its own token");
        assert_eq!(stats.open_connections(), 1, "one kept-alive connection");
        let refused = client
            .exchange(&ask(
                "delete:orders/{sub}/1",
                &m.idp_token("alice", |_| {}),
                SubjectTokenType::AccessToken,
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, StsClientError::Refused(e) if e.code() == ErrorCode::InvalidScope)
        );
        // Another service's identity than the pinned one: the handshake fails.
        let wrong = StsClient::from_workload(
            &workload(m.dir.path(), &m.ca, "gateway"),
            ServerId::exact(format!("spiffe://{TD}/orders").parse().unwrap()),
            format!("https://{addr}/token"),
        )
        .unwrap();
        let r = ask(
            "read:orders/{sub}/1",
            &m.idp_token("alice", |_| {}),
            SubjectTokenType::AccessToken,
        );
        assert!(matches!(
            wrong.exchange(&r).await,
            Err(StsClientError::Connect(_))
        ));
        assert!(matches!(
            StsClient::from_workload(
                &server,
                ServerId::TrustDomain,
                format!("http://{addr}/token")
            ),
            Err(StsClientError::Endpoint(_))
        ));
    }
}

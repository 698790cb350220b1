//! `inventory.v1.Inventory`: one unary method, `Reserve`, server and client.
//!
//! The server answers with what its handler returns; the handler is a closure so that the
//! caller decides what it reads (the request context, the peer identity) without this crate
//! depending on any secmesh crate.
//!
//! # Example
//! ```
//! use secmesh_testkit::inventory::{InventoryClient, InventoryServer, ReserveReply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = InventoryServer::new(|req: tonic::Request<_>| {
//!     let sku: &secmesh_testkit::inventory::ReserveRequest = req.get_ref();
//!     Ok(ReserveReply { sub: format!("reserved {}", sku.sku), ..ReserveReply::default() })
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(
//!     tonic::transport::Server::builder()
//!         .add_service(server)
//!         .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
//! );
//! let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
//!     .connect()
//!     .await?;
//! let mut client = InventoryClient::with_origin(channel, format!("http://{addr}").parse()?);
//! assert_eq!(client.reserve("A-1").await?.sub, "reserved A-1");
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::Status;
use tonic::body::Body;
use tonic::client::GrpcService;

/// The service's full name, as tonic routes it.
pub const SERVICE: &str = "inventory.v1.Inventory";
/// The path of the `Reserve` method.
pub const RESERVE_PATH: &str = "/inventory.v1.Inventory/Reserve";

/// `Reserve`'s request: the stock-keeping unit to reserve.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReserveRequest {
    /// The stock-keeping unit.
    #[prost(string, tag = "1")]
    pub sku: String,
}

/// `Reserve`'s reply: who the stock was reserved for, as the server saw the call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReserveReply {
    /// The subject the stock was reserved for.
    #[prost(string, tag = "1")]
    pub sub: String,
    /// The transaction id of the call.
    #[prost(string, tag = "2")]
    pub txn: String,
    /// The trace id of the call.
    #[prost(string, tag = "3")]
    pub trace_id: String,
    /// The calling workload (its SPIFFE ID), when the server knows it.
    #[prost(string, tag = "4")]
    pub caller: String,
}

/// The server: routes `Reserve` to its handler, anything else to `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct InventoryServer<H> {
    handler: H,
}

impl<H> InventoryServer<H>
where
    H: Fn(tonic::Request<ReserveRequest>) -> Result<ReserveReply, Status>
        + Clone
        + Send
        + Sync
        + 'static,
{
    /// A server that answers `Reserve` with `handler`. The handler runs inside the request's
    /// future, so task-locals set by the layers around the server are visible to it.
    pub fn new(handler: H) -> Self {
        InventoryServer { handler }
    }
}

impl<H> tonic::server::NamedService for InventoryServer<H> {
    const NAME: &'static str = SERVICE;
}

struct Reserve<H>(H);

impl<H> tonic::server::UnaryService<ReserveRequest> for Reserve<H>
where
    H: Fn(tonic::Request<ReserveRequest>) -> Result<ReserveReply, Status>,
{
    type Response = ReserveReply;
    type Future = std::future::Ready<Result<tonic::Response<ReserveReply>, Status>>;

    fn call(&mut self, req: tonic::Request<ReserveRequest>) -> Self::Future {
        std::future::ready((self.0)(req).map(tonic::Response::new))
    }
}

impl<H> tower_service::Service<http::Request<Body>> for InventoryServer<H>
where
    H: Fn(tonic::Request<ReserveRequest>) -> Result<ReserveReply, Status>
        + Clone
        + Send
        + Sync
        + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move {
            if req.uri().path() == RESERVE_PATH {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Reserve(handler), req).await)
            } else {
                Ok(Status::unimplemented("no such method").into_http())
            }
        })
    }
}

/// The client, over any gRPC transport (a tonic channel, with layers around it or not).
#[derive(Clone)]
pub struct InventoryClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> InventoryClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    /// A client that sends its requests to `origin` (scheme and authority) through `inner`.
    /// With an origin, the authority is on each request's URI, where an allowlist sees it.
    pub fn with_origin(inner: T, origin: http::Uri) -> Self {
        InventoryClient {
            inner: tonic::client::Grpc::with_origin(inner, origin),
        }
    }

    /// Calls `Reserve` for `sku`. A transport that is not ready answers `UNAVAILABLE`.
    pub async fn reserve(&mut self, sku: &str) -> Result<ReserveReply, Status> {
        self.inner.ready().await.map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            Status::unavailable(format!("inventory is not ready: {e}"))
        })?;
        self.inner
            .unary(
                tonic::Request::new(ReserveRequest {
                    sku: sku.to_owned(),
                }),
                PathAndQuery::from_static(RESERVE_PATH),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .map(tonic::Response::into_inner)
    }
}

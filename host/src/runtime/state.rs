//! Per-request store state: the WASI context built from a function's grants, the
//! outgoing-HTTP policy, and the memory limiter.
//!
//! A network grant names destinations a function may reach, but never more than the
//! server's outbound [`AddressPolicy`] allows: a TCP connect is checked on the address
//! it is about to connect to, and an outgoing HTTP request on every address its host
//! resolves to (runtime/outgoing.rs). So `"*"`, `127.0.0.1:*` or `169.254.169.254:80`
//! reach nothing internal unless the operator's allow-list covers it.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::platform::{KeyValue, PlatformCtx, Services};
use crate::limits::{Grants, ModelBudget};
use crate::net::AddressPolicy;

/// What a function may touch: its grants and, if `storage` is granted, its directory.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Capabilities from the manifest.
    pub grants: Grants,
    /// Host directory mounted at `/data` when `grants.storage` is set.
    pub storage_dir: Option<PathBuf>,
    /// Where any connection may go, whatever the grants say; the default permits
    /// public addresses only.
    pub addresses: Arc<AddressPolicy>,
    /// What the model calls of one invocation may spend.
    pub budget: ModelBudget,
    /// The function's key-value store, when `grants.kv` is set.
    pub kv: Option<Arc<dyn KeyValue>>,
    /// Where its invocations (outcome, duration, output) are recorded.
    pub log: Option<Arc<dyn super::InvocationLog>>,
}

/// The data of one `Store`: lives exactly as long as one request.
pub struct State {
    pub(super) table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutgoingPolicy,
    pub(super) limiter: MemoryLimiter,
    /// Set for API handler calls: what their non-WASI imports reach.
    pub(super) handler: Option<super::handler::HandlerCtx>,
    /// Set for user function calls: what their platform imports reach.
    pub(super) platform: Option<PlatformCtx>,
    /// Where `output.send` puts a streamed request's chunks (handlers, chat functions).
    pub(super) output: Option<tokio::sync::mpsc::Sender<String>>,
}

/// Whose call a store serves: an API handler's, or a user function's on behalf of the
/// invoking key (`None` while a tool is described at deploy), with the stream sink of a
/// chat function's streamed request and, for an invocation that is logged, where its
/// stdout and stderr go.
pub(super) enum Guest {
    Handler(super::handler::HandlerCtx),
    Function(Option<Arc<dyn Services>>, Option<tokio::sync::mpsc::Sender<String>>, Option<super::capture::Captured>),
}

impl State {
    /// Builds a deny-by-default WASI context widened only by `sandbox`.
    pub(super) fn new(sandbox: &Sandbox, memory_bytes: usize, guest: Guest) -> anyhow::Result<Self> {
        let mut b = WasiCtx::builder();
        // No stdio, args, env, preopens or sockets unless granted below.
        b.allow_ip_name_lookup(false).allow_tcp(false).allow_udp(false);
        for (k, v) in &sandbox.grants.env {
            b.env(k, v);
        }
        if let (true, Some(dir)) = (sandbox.grants.storage, &sandbox.storage_dir) {
            std::fs::create_dir_all(dir)?;
            b.preopened_dir(dir, "/data", FsPerms::ReadWrite).map_err(|e| anyhow::anyhow!("mounting {}: {e}", dir.display()))?;
        }
        if !sandbox.grants.network.is_empty() {
            let grants = sandbox.grants.clone();
            let policy = sandbox.addresses.clone();
            b.inherit_network().allow_tcp(true).allow_ip_name_lookup(true).socket_addr_check(move |addr, usage| {
                // Connecting is what a grant allows; listening stays denied.
                let ok = match usage {
                    // `addr` is the resolved address the socket connects to next.
                    SocketAddrUse::TcpConnect => grants.allows(&addr.ip().to_string(), addr.port()) && policy.permits(addr.ip()),
                    // The implicit bind to an ephemeral port that precedes a connect.
                    SocketAddrUse::TcpBind => addr.port() == 0,
                    _ => false,
                };
                Box::pin(async move { ok })
            });
        }
        let (handler, platform, output) = match guest {
            Guest::Handler(mut ctx) => {
                let output = ctx.output.take();
                (Some(ctx), None, output)
            }
            Guest::Function(services, output, captured) => {
                if let Some(captured) = captured {
                    b.stdout(captured.clone()).stderr(captured);
                }
                let kv = sandbox.kv.clone();
                (None, Some(PlatformCtx::new(services, kv, sandbox.grants.clone(), sandbox.budget)), output)
            }
        };
        Ok(Self {
            table: ResourceTable::new(),
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            hooks: OutgoingPolicy { grants: sandbox.grants.clone(), addresses: sandbox.addresses.clone() },
            limiter: MemoryLimiter { max: memory_bytes, hit: false },
            handler,
            platform,
            output,
        })
    }

    /// Whether a guest failure message passes on a refusal of one of its grants.
    pub(super) fn refused(&self, failure: &str) -> bool {
        self.platform.as_ref().is_some_and(|p| p.refused(failure))
    }

    /// Whether the guest tried to grow memory past its limit during this request.
    pub fn memory_limit_hit(&self) -> bool {
        self.limiter.hit
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Outgoing `wasi:http` requests go out only to granted destinations, at addresses the
/// address policy permits.
struct OutgoingPolicy {
    grants: Grants,
    addresses: Arc<AddressPolicy>,
}

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        // Dropping `fut` is what wasmtime-wasi-http's default sender does too.
        drop(fut);
        let grants = self.grants.clone();
        let addresses = self.addresses.clone();
        Box::new(async move {
            let addrs = super::outgoing::destinations(request.uri(), &grants, &addresses).await?;
            super::outgoing::send(request, options, addrs).await
        })
    }
}

/// Caps linear memory growth and remembers that it did, so the error can say why the
/// guest died (a Rust guest aborts when allocation fails).
pub(super) struct MemoryLimiter {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

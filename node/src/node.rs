//! Wiring: builds the chain, pool, RPC server, sealer and market keeper, and runs them until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::blockchain::{Blockchain, ChainOptions};
use crate::chain::ChainSpec;
use crate::consensus::clique::Proposals;
use crate::crypto::SigningKey;
use crate::keeper::Keeper;
use crate::rpc::ui::UiMode;
use crate::rpc::{RpcConfig, RpcContext};
use crate::storage::Store;
use crate::txpool::{PoolConfig, TxPool};

/// Everything needed to start a node.
pub struct NodeConfig {
    /// Data directory (holds `chain.sqlite`).
    pub datadir: PathBuf,
    /// Address of the HTTP/WebSocket JSON-RPC server.
    pub http_addr: SocketAddr,
    /// The sealing key, if this node is a signer.
    pub signer: Option<SigningKey>,
    /// Unlocked development accounts.
    pub dev_accounts: Vec<SigningKey>,
    /// Pool limits.
    pub pool: PoolConfig,
    /// RPC limits.
    pub rpc: RpcConfig,
    /// Blocks of state history kept (`None`: every block, an archive node).
    pub state_history: Option<u64>,
    /// Chain options (read connections, state cache).
    pub chain: ChainOptions,
    /// The peer network, if enabled.
    pub network: Option<crate::network::NetworkConfig>,
    /// What the sealer builds within the chain's rules (gas limit target, a lower byte limit).
    pub seal: crate::chain::SealLimits,
    /// The market keeper's key, if this node runs a keeper ([`crate::keeper`]). The chain must
    /// have the market and the key must be a registry operator.
    pub keeper: Option<SigningKey>,
    /// Whether the keeper also clears and settles every slot (`--keeper-settle`,
    /// [`crate::keeper`]'s `settle` module).
    pub keeper_settles: bool,
    /// Where to serve Prometheus metrics (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// A running node.
pub struct Node {
    /// The chain.
    pub chain: Arc<Blockchain>,
    /// Where JSON-RPC listens.
    pub http_addr: SocketAddr,
    /// The peer network, if enabled.
    pub network: Option<Arc<crate::network::NetworkHandle>>,
    /// Where the trading dApp is served (`None` with `--no-ui`).
    pub ui_addr: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Opens the data directory and starts the RPC server and (for a signer) the sealer.
    pub async fn start(spec: ChainSpec, config: NodeConfig) -> anyhow::Result<Self> {
        let store = Store::open(&config.datadir, config.state_history)?;
        let pool = Arc::new(TxPool::new(config.pool));
        let chain =
            Arc::new(Blockchain::open(spec, store, pool, &config.chain)?.with_seal_limits(config.seal)?);
        let keeper = match config.keeper.clone() {
            Some(key) => {
                let market = chain.spec().p2pe.market.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "a market keeper needs a chain with the energy market; this genesis has none"
                    )
                })?;
                let keeper = Keeper::new(chain.clone(), market, key, crate::keeper::DEFAULT_HORIZON)
                    .settling(config.keeper_settles);
                if !keeper.is_operator()? {
                    anyhow::bail!(
                        "the keeper key {} is not a registry operator on this chain: openSlot is operator-only. \
                         Make it one in the genesis (p2pe-node genesis --market-admin ADDRESS) or with \
                         Registry.grantRole(OPERATOR_ROLE, ADDRESS) from an admin",
                        keeper.address()
                    );
                }
                Some(keeper)
            }
            None => None,
        };
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let network = match config.network.clone() {
            Some(net) => {
                let (handle, task) = crate::network::start(chain.clone(), net, rx.clone()).await?;
                tasks.push(task);
                Some(Arc::new(handle))
            }
            None => None,
        };
        if let Some(addr) = config.metrics {
            crate::metrics::install(addr)?;
            crate::metrics::spawn_sampler(crate::metrics::Sources {
                chain: chain.clone(),
                network: network.clone(),
            });
            tracing::info!("metrics: http://{addr}/metrics");
        }
        let proposals = Proposals::default();
        let limits = config.rpc.calls.clone();
        let calls = crate::rpc::workers::CallPool::start(chain.open_readers(limits.workers)?, limits)
            .map_err(|e| anyhow::anyhow!("cannot start the RPC call workers: {e}"))?;
        let ctx = Arc::new(RpcContext {
            calls,
            chain: chain.clone(),
            config: config.rpc.clone(),
            dev_accounts: config.dev_accounts.clone(),
            signer: config.signer.as_ref().map(|k| k.address()),
            filters: Default::default(),
            network: network.clone(),
            proposals: proposals.clone(),
            client_version: format!(
                "p2pe-node/v{}/{}-{}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        });
        let mut srx = rx.clone();
        let (http_addr, server) = crate::rpc::serve(ctx.clone(), config.http_addr, async move {
            let _ = srx.changed().await;
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http_addr))?;
        tasks.push(server);
        // The trading dApp on its own port (--ui-port), which answers JSON-RPC too.
        let mut ui_addr = None;
        let ui_mode = config.rpc.ui;
        if let UiMode::Port(port) = ui_mode {
            let addr = SocketAddr::new(config.http_addr.ip(), port);
            let mut urx = rx.clone();
            let (bound, ui_server) = crate::rpc::server::serve_with_ui(ctx, addr, true, async move {
                let _ = urx.changed().await;
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the dApp (--ui-port): {e}"))?;
            tasks.push(ui_server);
            ui_addr = Some(bound);
        }
        if ui_mode == UiMode::SamePort {
            ui_addr = Some(http_addr);
        }
        if let Some(a) = ui_addr {
            tracing::info!("trading dApp: http://{a}/");
        }
        if let Some(key) = config.signer.clone() {
            tasks.push(tokio::spawn(crate::sealer::run(chain.clone(), key, proposals, rx.clone())));
        }
        if let Some(keeper) = keeper {
            tasks.push(tokio::spawn(crate::keeper::run(keeper, rx.clone())));
        }
        Ok(Self { chain, http_addr, ui_addr, network, shutdown, tasks })
    }

    /// Stops the sealer, the server and the network and waits for them, then closes the chain
    /// ([`Blockchain::close`]: no block is written after this, not even one a peer's import still
    /// in flight would commit) and empties the write-ahead log into `chain.sqlite`, so that the
    /// file alone holds every block (a failure is logged: the log still holds those blocks, and
    /// the next start applies it).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let chain = self.chain.clone();
        match tokio::task::spawn_blocking(move || chain.close()).await {
            Ok(Ok(())) => tracing::info!("write-ahead log copied into chain.sqlite"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not empty the write-ahead log; the next start applies it")
            }
            Err(e) => tracing::warn!(error = %e, "the final checkpoint did not finish"),
        }
    }
}

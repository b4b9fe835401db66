//! The one way the node builds an EVM, in the spirit of reth's `ConfigureEvm`: blocks, calls,
//! traces, the keeper's simulations and the genesis market deployment all get their revm
//! instance here, so the fork (Osaka), the chain id and the zeroed fees are set in one place.

use revm::context::{BlockEnv, CfgEnv, Context};
use revm::handler::{MainBuilder, MainContext, MainnetContext, MainnetEvm};
use revm::Database;

use super::cfg_env;

/// What the EVM is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvmMode {
    /// A block's transactions (sealing, import, replaying a block for a trace): every rule
    /// applies, nonces included.
    Block,
    /// A call that commits nothing (`eth_call`, a traced call, the keeper's simulations, the
    /// genesis deployment): the sender's nonce is not checked.
    Call,
}

/// Builds the node's EVMs for one chain.
#[derive(Debug, Clone, Copy)]
pub struct EvmConfig {
    chain_id: u64,
}

impl EvmConfig {
    /// The EVM configuration of chain `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        Self { chain_id }
    }

    /// The revm configuration for `mode`.
    pub fn cfg(&self, mode: EvmMode) -> CfgEnv {
        let mut cfg = cfg_env(self.chain_id);
        cfg.disable_nonce_check = mode == EvmMode::Call;
        cfg
    }

    /// An EVM over `db` in block environment `block`.
    pub fn evm<DB: Database>(
        &self,
        db: DB,
        block: BlockEnv,
        mode: EvmMode,
    ) -> MainnetEvm<MainnetContext<DB>> {
        Context::mainnet().with_db(db).with_block(block).with_cfg(self.cfg(mode)).build_mainnet()
    }

    /// [`EvmConfig::evm`] with an inspector (a gas and time meter, a tracer).
    pub fn evm_with_inspector<DB: Database, I>(
        &self,
        db: DB,
        block: BlockEnv,
        mode: EvmMode,
        inspector: I,
    ) -> MainnetEvm<MainnetContext<DB>, I> {
        Context::mainnet()
            .with_db(db)
            .with_block(block)
            .with_cfg(self.cfg(mode))
            .build_mainnet_with_inspector(inspector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_skip_the_nonce_check_and_blocks_do_not() {
        let config = EvmConfig::new(57);
        assert!(config.cfg(EvmMode::Call).disable_nonce_check);
        assert!(!config.cfg(EvmMode::Block).disable_nonce_check);
        assert_eq!(config.cfg(EvmMode::Block).chain_id, 57);
    }
}

//! Command-line interface: one module per subcommand.

pub mod account;
pub mod chainfile;
pub mod check;
pub mod common;
pub mod config_file;
pub mod dev;
pub mod genesis;
pub mod init;
pub mod peer_id;
pub mod run;
pub mod testnet;

use clap::{Parser, Subcommand};

/// p2pe-node: a Clique proof-of-authority Ethereum node for peer-to-peer energy trading.
///
/// Blocks are sealed by known signers (EIP-225), executed by revm under Osaka rules with no
/// transaction fees, stored in SQLite, and served over Ethereum JSON-RPC (HTTP and WebSocket on
/// one port), so MetaMask, Foundry, ethers, viem and web3.py work unmodified.
#[derive(Debug, Parser)]
#[command(name = "p2pe-node", version, about, long_about)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line,
    /// with timestamp, level, target and fields) for journald, Loki or Elasticsearch. The level
    /// comes from the P2PE_LOG variable (default `info`, e.g. `P2PE_LOG=p2pe_node=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway single-signer development chain with 10 funded accounts, the energy
    /// market and its keeper.
    Dev(dev::DevArgs),
    /// Create a data directory from a geth-style genesis file.
    Init(init::InitArgs),
    /// Run a node on an initialised data directory, sealing if given a signer keystore.
    Run(run::RunArgs),
    /// Write a genesis file for a new network.
    Genesis(genesis::GenesisArgs),
    /// Manage keystores (Web3 Secret Storage).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Re-verify every stored block from genesis, compare the resulting state root, and check
    /// every stored state-trie node against a rebuild from the leaves.
    Check(check::CheckArgs),
    /// Write blocks to a chain file (geth format: concatenated RLP blocks).
    Export(chainfile::ExportArgs),
    /// Verify and import the blocks of a chain file, as if they came from a peer.
    Import(chainfile::ImportArgs),
    /// Generate and start a local network of signers and followers on loopback.
    Testnet(testnet::TestnetArgs),
    /// Print the genesis JSON a data directory was initialised with.
    Dumpgenesis(chainfile::DumpGenesisArgs),
    /// Print this node's peer id (creating its identity key if needed), for other nodes'
    /// `--bootnodes /ip4/ADDR/tcp/PORT/p2p/<peer id>` and `--p2p-allow`.
    PeerId(peer_id::PeerIdArgs),
}

//! `p2pe-node peer-id`: this node's libp2p peer id, for other nodes' `--bootnodes` and
//! `--p2p-allow`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `peer-id`.
#[derive(Debug, Args)]
pub struct PeerIdArgs {
    /// Data directory of the node. Its identity key (`DATADIR/p2p-identity.key`) is created
    /// (mode 0600) if there is none yet, as `run` would on its first start.
    #[arg(long)]
    pub datadir: PathBuf,
}

/// Prints the peer id of the node whose data directory is given.
pub fn run(args: PeerIdArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.datadir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", args.datadir.display()))?;
    let key = crate::network::load_identity(&args.datadir.join("p2p-identity.key"))?;
    println!("{}", key.public().to_peer_id());
    Ok(())
}

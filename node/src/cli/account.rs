//! `p2pe-node account`: keystores.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use alloy_primitives::B256;

use super::common::read_password;
use crate::keystore::{write_keystore, Kdf};

/// Keystore commands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create a new key in a Web3 Secret Storage keystore file (scrypt at geth's standard cost,
    /// mode 0600) and print its address.
    New(NewArgs),
    /// Print the address of a keystore after checking its password.
    Inspect(InspectArgs),
}

/// Arguments of `account new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to write the keystore file into.
    #[arg(long)]
    pub keystore_dir: PathBuf,
    /// File name (default: a UUID). An existing file is never overwritten.
    #[arg(long)]
    pub name: Option<String>,
    /// Derive the encryption key with geth's light scrypt cost (n = 4096, p = 6) instead of the
    /// standard one (n = 262144, p = 1): decrypts in milliseconds, and is as much easier to
    /// brute-force. For tests and throwaway keys only.
    #[arg(long)]
    pub light_kdf: bool,
    /// File whose first line is the password (else the P2PE_PASSWORD variable).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// Arguments of `account inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The keystore file.
    pub keystore: PathBuf,
    /// File whose first line is the password (else the P2PE_PASSWORD variable).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// Runs an account command.
pub fn run(cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::New(a) => {
            let password = read_password(a.password_file.as_deref())?;
            let signer = alloy_signer_local::PrivateKeySigner::random();
            let kdf = if a.light_kdf { Kdf::Light } else { Kdf::Standard };
            let path = write_keystore(
                &a.keystore_dir,
                a.name.as_deref(),
                &B256::from(signer.to_bytes()),
                &password,
                kdf,
                &mut rand::thread_rng(),
            )
            .map_err(|e| anyhow::anyhow!("cannot create keystore: {e}"))?;
            println!("{}", signer.address());
            eprintln!("Keystore written to {}", path.display());
            Ok(())
        }
        AccountCommand::Inspect(a) => {
            let password = read_password(a.password_file.as_deref())?;
            let key = super::common::load_keystore(&a.keystore, &password)?;
            println!("{}", key.address());
            Ok(())
        }
    }
}

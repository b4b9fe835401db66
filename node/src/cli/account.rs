//! `p2pe-node account`: keystores.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::common::read_password;

/// Keystore commands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create a new key in a Web3 Secret Storage keystore file and print its address.
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
    /// File name (default: a UUID).
    #[arg(long)]
    pub name: Option<String>,
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
            std::fs::create_dir_all(&a.keystore_dir)?;
            let (signer, file) = alloy_signer_local::PrivateKeySigner::new_keystore(
                &a.keystore_dir,
                &mut rand::thread_rng(),
                password,
                a.name.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("cannot create keystore: {e}"))?;
            println!("{}", signer.address());
            eprintln!("Keystore written to {}", a.keystore_dir.join(file).display());
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

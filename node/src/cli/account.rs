//! `p2pe-node account`: keystores.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use alloy_primitives::B256;

use super::common::read_password;
use p2pe_keystore::{write_keystore, Kdf};

/// Keystore commands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create a new key in a Web3 Secret Storage keystore file (scrypt at geth's standard cost,
    /// mode 0600) and print its address.
    New(NewArgs),
    /// Print the address of a keystore after checking its password.
    Inspect(InspectArgs),
    /// Import a key you already have into a new keystore: a private key (hex) from a file or
    /// standard input, or the key at an index of a BIP-39 mnemonic read from a file.
    Import(ImportArgs),
    /// List the keystores of a directory with their addresses (from the files' `address` field, as
    /// geth writes it; no password needed).
    List(ListArgs),
}

/// Arguments of `account import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory to write the keystore file into.
    #[arg(long)]
    pub keystore_dir: PathBuf,
    /// File name (default: a UUID). An existing file is never overwritten.
    #[arg(long)]
    pub name: Option<String>,
    /// File whose first line is the private key in hex (with or without 0x); `-` reads standard
    /// input. Keys are never taken on the command line, where other users see them.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "mnemonic_file",
        required_unless_present = "mnemonic_file"
    )]
    pub private_key_file: Option<PathBuf>,
    /// File whose first line is a BIP-39 mnemonic; the key is derived at m/44'/60'/0'/0/INDEX.
    #[arg(long, value_name = "FILE", requires = "index")]
    pub mnemonic_file: Option<PathBuf>,
    /// Index of the key in the mnemonic (with --mnemonic-file).
    #[arg(long)]
    pub index: Option<u32>,
    /// geth's light scrypt cost instead of the standard one (see `account new --help`).
    #[arg(long)]
    pub light_kdf: bool,
    /// File whose first line is the keystore's password (else the P2PE_PASSWORD variable).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// Arguments of `account list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The directory to list.
    #[arg(long)]
    pub keystore_dir: PathBuf,
}

/// The first line of `path` (`-`: standard input), trimmed; the error never quotes the content.
fn first_line(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| anyhow::anyhow!("cannot read the {what} from standard input: {e}"))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?
    };
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The key `import` was given.
fn imported_key(a: &ImportArgs) -> anyhow::Result<alloy_signer_local::PrivateKeySigner> {
    if let Some(file) = &a.private_key_file {
        let hex = first_line(file, "private key")?;
        let bytes: B256 = hex.trim_start_matches("0x").parse().map_err(|_| {
            anyhow::anyhow!("the private key must be 32 bytes of hex (64 digits, 0x optional)")
        })?;
        return alloy_signer_local::PrivateKeySigner::from_bytes(&bytes).map_err(|_| {
            anyhow::anyhow!("the private key is not a valid secp256k1 key (zero or too large)")
        });
    }
    let (Some(file), Some(index)) = (&a.mnemonic_file, a.index) else {
        anyhow::bail!("give --private-key-file FILE, or --mnemonic-file FILE with --index N");
    };
    let phrase = first_line(file, "mnemonic")?;
    alloy_signer_local::MnemonicBuilder::<alloy_signer_local::coins_bip39::English>::default()
        .phrase(phrase.as_str())
        .index(index)
        .and_then(|b| b.build())
        .map_err(|_| anyhow::anyhow!("the mnemonic file does not hold a valid English BIP-39 mnemonic"))
}

/// Prints `ADDRESS  FILE` for each keystore of `dir`, sorted by file name.
fn list(dir: &std::path::Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    for path in files {
        match p2pe_keystore::normalize(&path) {
            Ok(doc) => match doc.get("address").and_then(|a| a.as_str()) {
                Some(a) => match a.trim_start_matches("0x").parse::<alloy_primitives::Address>() {
                    Ok(addr) => println!("{addr}  {}", path.display()),
                    Err(_) => println!("(bad address field)  {}", path.display()),
                },
                None => {
                    println!("(no address field: account inspect needs the password)  {}", path.display())
                }
            },
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    Ok(())
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
        AccountCommand::Import(a) => {
            let signer = imported_key(&a)?;
            let password = read_password(a.password_file.as_deref())?;
            let kdf = if a.light_kdf { Kdf::Light } else { Kdf::Standard };
            let secret = B256::from(signer.to_bytes());
            let path = write_keystore(
                &a.keystore_dir,
                a.name.as_deref(),
                &secret,
                &password,
                kdf,
                &mut rand::thread_rng(),
            )
            .map_err(|e| anyhow::anyhow!("cannot create keystore: {e}"))?;
            println!("{}", signer.address());
            eprintln!("Keystore written to {}", path.display());
            Ok(())
        }
        AccountCommand::List(a) => list(&a.keystore_dir),
        AccountCommand::Inspect(a) => {
            let password = read_password(a.password_file.as_deref())?;
            let key = super::common::load_keystore(&a.keystore, &password)?;
            println!("{}", key.address());
            Ok(())
        }
    }
}

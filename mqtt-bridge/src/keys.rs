//! Loading meter and relayer keys from Web3 Secret Storage keystores.
//!
//! Keystores are decrypted in parallel (scrypt is slow by design). The key material never leaves the
//! signer: nothing here prints or logs it, and errors name only the configuration key and the file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;

use crate::config::{read_password_file, Config, ConfigError, KeyConfig};
use crate::submit::MeterKey;

/// Decrypts one keystore; the error names `key` (the config key of the keystore).
pub fn load_key(key: &str, k: &KeyConfig) -> Result<PrivateKeySigner, ConfigError> {
    let password = read_password_file(&format!("{key} (password file)"), &k.password_file)?;
    // geth's, ethers.js's ("Crypto") and web3.py's keystores alike (p2pe-keystore); the message
    // names the file and the reason.
    p2pe_keystore::decrypt(&k.keystore, password)
        .map_err(|e| ConfigError { key: key.to_string(), message: e.to_string() })
}

fn check_address(
    key: &str,
    signer: &PrivateKeySigner,
    want: Address,
    path: &Path,
) -> Result<(), ConfigError> {
    if signer.address() != want {
        return Err(ConfigError {
            key: key.to_string(),
            message: format!(
                "keystore {} holds the key of {}, not the configured address {want}",
                path.display(),
                signer.address()
            ),
        });
    }
    Ok(())
}

/// The decrypted keys: per meter id, and the relayer.
pub struct Keys {
    /// Meter keys by meter id.
    pub meters: HashMap<String, Arc<MeterKey>>,
    /// The relayer of batches (the configured relayer, else the first meter's key).
    pub relayer: Arc<PrivateKeySigner>,
}

/// Decrypts every keystore of `cfg` and checks each meter key's address.
pub fn load_all(cfg: &Config) -> Result<Keys, ConfigError> {
    let jobs: Vec<(String, KeyConfig, Option<Address>)> = cfg
        .meters
        .values()
        .map(|m| (format!("meters.{}.keystore", m.id), m.key.clone(), Some(m.address)))
        .chain(cfg.chain.relayer.iter().map(|k| ("chain.relayer_keystore".to_string(), k.clone(), None)))
        .collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8);
    let chunk = jobs.len().div_ceil(threads).max(1);
    let results: Vec<Result<PrivateKeySigner, ConfigError>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|(key, k, _)| load_key(key, k)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("keystore thread")).collect()
    });
    let mut meters = HashMap::new();
    let mut relayer = None;
    for ((key, k, want), res) in jobs.iter().zip(results) {
        let signer = res?;
        match want {
            Some(addr) => {
                check_address(key, &signer, *addr, &k.keystore)?;
                let id = key.trim_start_matches("meters.").trim_end_matches(".keystore").to_string();
                meters.insert(id, Arc::new(MeterKey { address: *addr, signer }));
            }
            None => relayer = Some(Arc::new(signer)),
        }
    }
    let relayer = match relayer {
        Some(r) => r,
        None => {
            let first = cfg.meters.keys().next().expect("at least one meter");
            Arc::new(meters[first].signer.clone())
        }
    };
    Ok(Keys { meters, relayer })
}

//! `--config FILE`: every flag of a subcommand, from a TOML file as well.
//!
//! Each top-level key of the file is a flag's long name, with `-` or `_` between words
//! (`http-addr = "0.0.0.0:8545"` or `http_addr = ...`):
//! - a string or number is the flag's value;
//! - `true` turns a switch on (`archive = true` is `--archive`), `false` leaves it off;
//! - an array gives a repeated flag (`bootnodes = ["/ip4/…", "/ip4/…"]`).
//!
//! A flag given on the command line wins over the same key in the file, so a unit file can keep
//! its settings in one place and a one-off run can still change one. An unknown key, a nested
//! table or a `config` key in the file is refused with an error that names the file and the key;
//! nothing is silently ignored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that is no flag of the subcommand, or a value of the wrong shape.
    #[error("{path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// `--config` without a file name.
    #[error("--config needs a file name: --config node.toml")]
    MissingValue,
}

/// Expands `--config FILE` in `args` (the whole command line, program name first): the file's
/// settings are inserted as flags right after the subcommand's name, except those also given on
/// the command line. `cli` is the clap command the arguments are for. Without `--config`, the
/// arguments come back unchanged.
pub fn expand(cli: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let Some((at, path)) = find_config(&args)? else {
        return Ok(args);
    };
    // The subcommand is the first argument that names one; `--config` must come after it.
    let Some((sub_at, sub)) = args
        .iter()
        .enumerate()
        .take(at)
        .skip(1)
        .find_map(|(i, a)| a.to_str().and_then(|s| cli.find_subcommand(s)).map(|c| (i, c)))
    else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| ConfigFileError::Read { path: path.clone(), source })?;
    let given: Vec<String> = args[sub_at + 1..].iter().filter_map(long_name).collect();
    let from_file = file_flags(cli, sub, &path, &text, &given)?;
    let mut out = args[..=sub_at].to_vec();
    out.extend(from_file);
    out.extend(args[sub_at + 1..].iter().cloned());
    Ok(out)
}

/// The position and value of `--config FILE` / `--config=FILE`, if given.
fn find_config(args: &[OsString]) -> Result<Option<(usize, PathBuf)>, ConfigFileError> {
    for (i, a) in args.iter().enumerate() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            let value = args.get(i + 1).ok_or(ConfigFileError::MissingValue)?;
            return Ok(Some((i, PathBuf::from(value))));
        }
        if let Some(v) = s.strip_prefix("--config=") {
            if v.is_empty() {
                return Err(ConfigFileError::MissingValue);
            }
            return Ok(Some((i, PathBuf::from(v))));
        }
    }
    Ok(None)
}

/// The long flag name of a command-line argument (`--http-addr=x` → `http-addr`).
fn long_name(arg: &OsString) -> Option<String> {
    let s = arg.to_str()?.strip_prefix("--")?;
    Some(s.split('=').next().unwrap_or(s).to_string())
}

/// The file's settings as flags, skipping those in `given`.
fn file_flags(
    cli: &Command,
    sub: &Command,
    path: &Path,
    text: &str,
    given: &[String],
) -> Result<Vec<OsString>, ConfigFileError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigFileError::Syntax { path: path.into(), message: e.to_string() })?;
    let key_error = |message: String| ConfigFileError::Key { path: path.into(), message };
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        if name == "config" {
            return Err(key_error("`config` cannot be set from a configuration file".into()));
        }
        if value.is_table() {
            return Err(key_error(format!(
                "`{key}` is a table; settings are top-level keys (no [sections])"
            )));
        }
        let global = cli.get_arguments().filter(|a| a.is_global_set());
        let arg = sub.get_arguments().chain(global).find(|a| a.get_long() == Some(name.as_str())).ok_or_else(|| {
            key_error(format!(
                "unknown setting `{key}`: `p2pe-node {} --help` lists the settings (flags without their `--`)",
                sub.get_name()
            ))
        })?;
        if given.contains(&name) {
            continue;
        }
        let takes_value =
            arg.get_num_args().map(|n| n.takes_values()).unwrap_or(true) && arg.get_action().takes_values();
        push_value(&mut out, &name, key, value, takes_value).map_err(key_error)?;
    }
    Ok(out)
}

/// Appends the flags for one key.
fn push_value(
    out: &mut Vec<OsString>,
    name: &str,
    key: &str,
    value: &toml::Value,
    takes_value: bool,
) -> Result<(), String> {
    use toml::Value as V;
    match value {
        V::Boolean(on) if !takes_value => {
            if *on {
                out.push(format!("--{name}").into());
            }
        }
        V::Boolean(_) => return Err(format!("`{key}` takes a value, not true/false")),
        _ if !takes_value => {
            return Err(format!("`{key}` is a switch: write `{key} = true` or leave it out"))
        }
        V::Array(items) => {
            for item in items {
                if matches!(item, V::Array(_) | V::Table(_)) {
                    return Err(format!("`{key}`: an array item must be a string or a number"));
                }
                push_value(out, name, key, item, true)?;
            }
        }
        V::Table(_) => {
            return Err(format!("`{key}` is a table; settings are top-level keys (no [sections])"))
        }
        V::String(s) => out.push(format!("--{name}={s}").into()),
        V::Integer(i) => out.push(format!("--{name}={i}").into()),
        V::Float(f) => out.push(format!("--{name}={f}").into()),
        V::Datetime(d) => out.push(format!("--{name}={d}").into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run_args(file: &str, cli: &[&str]) -> Result<Vec<String>, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> =
            vec!["p2pe-node".into(), "run".into(), "--config".into(), path.clone().into()];
        args.extend(cli.iter().map(OsString::from));
        let out = expand(&crate::cli::Cli::command(), args)?;
        Ok(out
            .into_iter()
            .skip(2)
            .map(|a| a.into_string().unwrap())
            .filter(|a| !a.contains("node.toml"))
            .collect())
    }

    #[test]
    fn values_switches_and_lists_become_flags() {
        let out = run_args(
            "datadir = \"/var/lib/p2pe\"\nhttp_addr = \"0.0.0.0:8545\"\narchive = true\nno-p2p = false\nhttp-vhosts = [\"a\", \"b\"]\nstate-history = 256\n",
            &[],
        )
        .unwrap();
        for want in [
            "--datadir=/var/lib/p2pe",
            "--http-addr=0.0.0.0:8545",
            "--archive",
            "--http-vhosts=a",
            "--http-vhosts=b",
            "--state-history=256",
        ] {
            assert!(out.iter().any(|a| a == want), "{want} missing from {out:?}");
        }
        assert!(!out.iter().any(|a| a.starts_with("--no-p2p")), "{out:?}");
    }

    #[test]
    fn the_command_line_wins() {
        let out = run_args("datadir = \"/from/file\"\n", &["--datadir", "/from/cli"]).unwrap();
        assert_eq!(out, vec!["--config", "--datadir", "/from/cli"]);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = run_args("datadri = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown setting `datadri`") && e.contains("node.toml"), "{e}");
        let e = run_args("archive = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`archive` is a switch"), "{e}");
        let e = run_args("[rpc]\nport = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("is a table"), "{e}");
        let e = run_args("config = \"other.toml\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("cannot be set from a configuration file"), "{e}");
        let e = run_args("datadir = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("is not valid TOML"), "{e}");
    }
}

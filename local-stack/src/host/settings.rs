//! The single-host mode's settings: the `.env` file, then the environment read by the same
//! parsers the sidecar (its `Config` and accounts module) and the bootstrap use, so a setting
//! means the same thing here as in the processes it starts.

use clap::Parser;
use sidecar::accounts::{self, AccountError, AccountSources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The settings only the runner reads (the rest goes to the children through the environment).
#[derive(Debug, Clone, Parser)]
#[command(name = "lingma-local host")]
pub struct HostEnv {
    /// Address of the gateway's OpenAI-compatible API.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, env = "PORT", default_value_t = 8317)]
    pub port: u16,
    /// Lingma processes; empty = the number of accounts.
    #[arg(long, env = "LINGMA_INSTANCE_COUNT", default_value = "")]
    pub instance_count: String,
    /// How long the sidecars may drain open chats after SIGTERM.
    #[arg(long, env = "SIDECAR_DRAIN_TIMEOUT_SEC", default_value_t = 30)]
    pub drain_timeout_sec: u64,
    #[command(flatten)]
    pub bootstrap: lingma_bootstrap::BootstrapArgs,
}

/// Everything read from the environment.
pub struct Settings {
    pub host: HostEnv,
    pub sidecar: sidecar::config::Config,
    pub accounts: Vec<sidecar::accounts::Account>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the env file {path}: {reason}")]
    EnvFileRead { path: String, reason: String },
    // The line itself is not shown: it may hold a password.
    #[error("the env file {path} has a malformed line (line {line}); expected NAME=value")]
    EnvFileLine { path: String, line: usize },
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error(
        "cannot read the Lingma accounts (LINGMA_ACCOUNTS_FILE, LINGMA_ACCOUNTS or LINGMA_USERNAME/LINGMA_PASSWORD): {0}"
    )]
    // Not a `source`: the message already holds it, and `{:#}` would print it twice.
    Accounts(AccountError),
}

/// The env file's settings the process environment does not already have with a non-empty
/// value (the environment wins, as with the original gateway).
#[derive(Debug, Default)]
pub struct EnvFile {
    pub path: Option<PathBuf>,
    vars: Vec<(String, String)>,
}

/// Read `path` (or `./.env` when present and no path is given). Nothing is written to the
/// process environment: the children get these through their command's environment.
pub fn load_env_file(path: Option<&Path>) -> Result<EnvFile, SettingsError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from(".env");
            if !default.is_file() {
                return Ok(EnvFile::default());
            }
            default
        }
    };
    let read_error = |reason: String| SettingsError::EnvFileRead {
        path: path.display().to_string(),
        reason,
    };
    let iter = dotenvy::from_path_iter(&path).map_err(|e| match e {
        dotenvy::Error::Io(io) => read_error(io.kind().to_string()),
        _ => read_error("not a valid env file".to_owned()),
    })?;
    let mut vars = Vec::new();
    for item in iter {
        match item {
            Ok((name, value)) => {
                // An empty variable counts as unset (compose passes unset `${X}` as "").
                if std::env::var_os(&name).is_none_or(|v| v.is_empty()) {
                    vars.push((name, value));
                }
            }
            Err(dotenvy::Error::LineParse(text, _)) => {
                return Err(SettingsError::EnvFileLine {
                    line: line_number(&path, &text),
                    path: path.display().to_string(),
                });
            }
            Err(dotenvy::Error::Io(io)) => return Err(read_error(io.kind().to_string())),
            Err(_) => return Err(read_error("not a valid env file".to_owned())),
        }
    }
    Ok(EnvFile {
        path: Some(path),
        vars,
    })
}

impl EnvFile {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// 1-based number of the first line of `path` that holds `text` (0 when not found).
fn line_number(path: &Path, text: &str) -> usize {
    let first = text.lines().next().unwrap_or_default();
    std::fs::read_to_string(path)
        .ok()
        .and_then(|all| all.lines().position(|l| l.contains(first)))
        .map_or(0, |i| i + 1)
}

/// The effective settings: the process environment, then the env file; empty values are
/// dropped (every setting treats empty as unset, but a typed flag would reject "").
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn new(file: &EnvFile) -> Self {
        let mut vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        vars.retain(|_, v| !v.is_empty());
        for (k, v) in &file.vars {
            vars.entry(k.clone()).or_insert_with(|| v.clone());
        }
        vars.retain(|_, v| !v.is_empty());
        Self { vars }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every set variable, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// These variables only (tests; empty values dropped like [`Environment::new`] does).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut vars: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.retain(|_, v| !v.is_empty());
        Self { vars }
    }

    /// Parse `T` (a clap parser whose flags name their env variables) from these settings
    /// instead of the process environment: each set variable becomes its `--flag=value`.
    pub fn parse<T: Parser>(&self) -> Result<T, SettingsError> {
        let mut args = Vec::new();
        let command = T::command().no_binary_name(true).mut_args(|arg| {
            let value = arg
                .get_env()
                .and_then(|name| name.to_str())
                .and_then(|name| self.get(name));
            if let (Some(value), Some(long)) = (value, arg.get_long()) {
                args.push(format!("--{long}={value}"));
            }
            // Only the synthesized flags count, never the raw process environment.
            arg.env(None::<&str>)
        });
        let matches = command.try_get_matches_from(args).map_err(clap_error)?;
        T::from_arg_matches(&matches).map_err(clap_error)
    }
}

/// Read the settings.
pub fn read(env: &Environment) -> Result<Settings, SettingsError> {
    let host: HostEnv = env.parse()?;
    let sidecar = env.parse::<sidecar::config::Cli>()?.config;
    let accounts = accounts::load_accounts(&AccountSources {
        file: sidecar.lingma_accounts_file.as_deref(),
        list: sidecar.lingma_accounts.as_deref(),
        username: sidecar.lingma_username.as_deref(),
        password: sidecar.lingma_password.as_deref(),
    })
    .map_err(SettingsError::Accounts)?;
    Ok(Settings {
        host,
        sidecar,
        accounts,
    })
}

/// clap's first error line only (names the setting and, for non-secret settings, the value).
fn clap_error(e: clap::Error) -> SettingsError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid settings");
    SettingsError::Invalid(first.trim_start_matches("error: ").to_owned())
}

/// Whether `name` is one of the project's settings (what the gateway child may get).
pub(crate) fn is_project_setting(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "LINGMA_",
        "GATEWAY_",
        "SIDECAR_",
        "SESSION_",
        "AUTO_LOGIN_",
        "DEFAULT_",
        "DEDICATED_",
        "LOG_",
        "OTEL_",
    ];
    matches!(name, "HOST" | "PORT" | "API_KEYS" | "METRICS_TOKEN")
        || PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(pairs)
    }

    #[test]
    fn settings_come_from_the_given_variables_and_empty_means_default() {
        let env = environment(&[
            ("PORT", ""),
            ("HOST", "127.0.0.1"),
            ("LINGMA_INSTANCE_COUNT", "3"),
            ("LINGMA_SOCKET_PORT", "40000"),
            ("LINGMA_BIN", ""),
            ("AUTO_LOGIN_ENABLED", "false"),
        ]);
        let host: HostEnv = env.parse().expect("host settings");
        assert_eq!(host.port, 8317);
        assert_eq!(host.host, "127.0.0.1");
        assert_eq!(host.instance_count, "3");
        let sidecar = env
            .parse::<sidecar::config::Cli>()
            .expect("sidecar settings")
            .config;
        assert_eq!(sidecar.lingma_socket_port, 40000);
        assert!(sidecar.lingma_bin.is_none());
        assert!(!sidecar.auto_login_enabled);
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let env = environment(&[("PORT", "eighty")]);
        let err = env.parse::<HostEnv>().expect_err("bad port");
        assert!(err.to_string().contains("--port"), "{err}");
    }

    #[test]
    fn malformed_accounts_fail_without_echoing_them() {
        let env = environment(&[("LINGMA_ACCOUNTS", "alice:pw-secret-1,bob-secret-2")]);
        let err = match read(&env) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("malformed accounts accepted"),
        };
        assert!(err.contains("account 2"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn env_file_lines_are_read_and_bad_lines_reported_by_number_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("good.env");
        std::fs::write(
            &good,
            "# comment\nLINGMA_HOST_MODE_TEST_A=1\nLINGMA_HOST_MODE_TEST_B=\"two words\"\n",
        )
        .expect("write");
        let file = load_env_file(Some(&good)).expect("good file");
        assert_eq!(file.get("LINGMA_HOST_MODE_TEST_B"), Some("two words"));
        let bad = dir.path().join("bad.env");
        std::fs::write(&bad, "A=1\nLINGMA_PASSWORD hunter2-secret\n").expect("write");
        let err = load_env_file(Some(&bad)).expect_err("bad file").to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let missing = load_env_file(Some(&dir.path().join("none.env")));
        assert!(missing.is_err());
    }
}

//! What each child of the single-host mode is given. Children do not inherit the runner's
//! environment (it holds every account, the API keys and the `.env`): each gets the basics
//! (PATH, HOME, locale, ... see the `child-env` crate) plus only the settings it reads.
//!
//! - a sidecar: the settings its own command line declares (read from its clap definition,
//!   so a new sidecar setting needs no change here), the simulator's `LINGMA_SIM_*` knobs and
//!   `OTEL_*`, never an account list, a password, a client key or the metrics token; its own
//!   account is added per instance by the runner;
//! - the gateway: every project setting except the accounts (it never logs in).

use super::settings::Environment;
use clap::CommandFactory;

/// Where accounts come from; only the runner reads these, a sidecar gets its one account.
pub const ACCOUNT_SETTINGS: &[&str] = &[
    "LINGMA_ACCOUNTS",
    "LINGMA_ACCOUNTS_FILE",
    "LINGMA_USERNAME",
    "LINGMA_PASSWORD",
];

/// Settings the runner decides itself for every child (the sidecars' shared token).
pub const REPLACED: &[&str] = &["SIDECAR_TOKEN", "SIDECAR_TOKEN_FILE"];

/// Secrets of the gateway's clients and scrapers, which a sidecar never needs.
const GATEWAY_SECRETS: &[&str] = &["API_KEYS", "METRICS_TOKEN", "ADMIN_TOKEN"];

/// Prefixes a sidecar passes on or reads outside its command line.
const SIDECAR_PREFIXES: &[&str] = &["LINGMA_SIM_", "OTEL_"];

/// The settings of `env` a sidecar gets before its per-instance ones.
pub fn sidecar_settings(env: &Environment) -> Vec<(String, String)> {
    let declared: Vec<String> = sidecar::config::Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|name| name.to_str().map(str::to_owned))
        .collect();
    env.vars()
        .filter(|(name, _)| {
            declared.iter().any(|d| d == name)
                || SIDECAR_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .filter(|(name, _)| {
            !ACCOUNT_SETTINGS.contains(name)
                && !REPLACED.contains(name)
                && !GATEWAY_SECRETS.contains(name)
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The settings of `env` the gateway gets before the runner's own.
pub fn gateway_settings(env: &Environment) -> Vec<(String, String)> {
    env.vars()
        .filter(|(name, _)| super::settings::is_project_setting(name))
        .filter(|(name, _)| !ACCOUNT_SETTINGS.contains(name) && !REPLACED.contains(name))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(vars: &[(String, String)]) -> Vec<&str> {
        vars.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn environment() -> Environment {
        Environment::from_pairs(&[
            ("API_KEYS", "k1"),
            ("METRICS_TOKEN", "m1"),
            ("LINGMA_ACCOUNTS", "a:pw-a,b:pw-b"),
            ("LINGMA_PASSWORD", "pw-x"),
            ("LINGMA_USERNAME", "x"),
            ("SIDECAR_TOKEN", "t"),
            ("LINGMA_SIM_CHUNKS", "3"),
            ("LINGMA_RPC_TIMEOUT", "5"),
            ("AUTO_LOGIN_TIMEOUT", "60"),
            ("GATEWAY_MAX_IN_FLIGHT", "4"),
            ("HOST", "127.0.0.1"),
            ("SOME_UNRELATED", "x"),
        ])
    }

    #[test]
    fn a_sidecar_gets_its_own_settings_and_no_secret_of_others() {
        let vars = sidecar_settings(&environment());
        assert_eq!(
            names(&vars),
            [
                "AUTO_LOGIN_TIMEOUT",
                "LINGMA_RPC_TIMEOUT",
                "LINGMA_SIM_CHUNKS"
            ]
        );
    }

    #[test]
    fn the_gateway_gets_project_settings_but_no_account() {
        let vars = gateway_settings(&environment());
        assert_eq!(
            names(&vars),
            [
                "API_KEYS",
                "AUTO_LOGIN_TIMEOUT",
                "GATEWAY_MAX_IN_FLIGHT",
                "HOST",
                "LINGMA_RPC_TIMEOUT",
                "LINGMA_SIM_CHUNKS",
                "METRICS_TOKEN"
            ]
        );
    }
}

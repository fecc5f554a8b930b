//! The Lingma account this process logs in with. Accounts come from LINGMA_ACCOUNTS_FILE,
//! LINGMA_ACCOUNTS or LINGMA_USERNAME + LINGMA_PASSWORD (in that order); the slot picks one
//! of them (slot i uses account i mod n). Shared with the single-host mode and the local
//! stack. Passwords never appear in `Debug`, in errors or in logs.

use serde::Deserialize;
use std::path::Path;

#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the account list cannot be read. Positions only: the text itself may hold passwords.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account {index}: expected \"username:password\"")]
    MissingSeparator { index: usize },
    #[error("account {index}: empty username")]
    EmptyUsername { index: usize },
    #[error("account {index}: empty password")]
    EmptyPassword { index: usize },
    #[error("accounts JSON is invalid at line {line}, column {column}")]
    Json { line: usize, column: usize },
    #[error("cannot read the accounts file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("LINGMA_USERNAME is set without LINGMA_PASSWORD (or the reverse)")]
    HalfAccount,
    #[error("LINGMA_ACCOUNT_SLOT must be a number or \"auto\"")]
    BadSlot,
}

/// Parse `u1:p1,u2:p2` or `[{"username":..,"password":..}]`. Empty text = no accounts.
pub fn parse_accounts(text: &str) -> Result<Vec<Account>, AccountError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let accounts = if text.starts_with('[') {
        let list: Vec<Account> = serde_json::from_str(text).map_err(|e| AccountError::Json {
            line: e.line(),
            column: e.column(),
        })?;
        list.into_iter()
            .map(|a| Account {
                username: a.username.trim().to_owned(),
                password: a.password,
            })
            .collect()
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .enumerate()
            .map(|(i, item)| {
                // Usernames have no ':'; passwords may.
                let (user, pass) = item
                    .split_once(':')
                    .ok_or(AccountError::MissingSeparator { index: i + 1 })?;
                Ok(Account {
                    username: user.trim().to_owned(),
                    password: pass.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    for (i, a) in accounts.iter().enumerate() {
        if a.username.is_empty() {
            return Err(AccountError::EmptyUsername { index: i + 1 });
        }
        if a.password.is_empty() {
            return Err(AccountError::EmptyPassword { index: i + 1 });
        }
    }
    Ok(accounts)
}

/// Where the accounts come from (the raw settings).
#[derive(Default, Clone)]
pub struct AccountSources<'a> {
    pub file: Option<&'a Path>,
    pub list: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// All configured accounts, from the first source that is set.
pub fn load_accounts(src: &AccountSources<'_>) -> Result<Vec<Account>, AccountError> {
    if let Some(path) = src.file {
        let text = std::fs::read_to_string(path).map_err(|e| AccountError::File {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        return parse_accounts(&text);
    }
    if let Some(list) = src.list.filter(|l| !l.trim().is_empty()) {
        return parse_accounts(list);
    }
    let user = src.username.map(str::trim).filter(|u| !u.is_empty());
    let pass = src.password.filter(|p| !p.is_empty());
    match (user, pass) {
        (Some(u), Some(p)) => Ok(vec![Account {
            username: u.to_owned(),
            password: p.to_owned(),
        }]),
        (None, None) => Ok(Vec::new()),
        _ => Err(AccountError::HalfAccount),
    }
}

/// The slot of this process: a number, or "auto" = the ordinal at the end of `host`
/// (StatefulSet pod `x-3` -> 3), else 0.
pub fn account_slot(setting: &str, host: &str) -> Result<usize, AccountError> {
    let setting = setting.trim();
    if setting.is_empty() || setting.eq_ignore_ascii_case("auto") {
        return Ok(host_ordinal(host).unwrap_or(0));
    }
    setting.parse().map_err(|_| AccountError::BadSlot)
}

fn host_ordinal(host: &str) -> Option<usize> {
    let (_, tail) = host.rsplit_once('-')?;
    tail.parse().ok()
}

/// The account for `slot` (slot i uses account i mod n); `None` when there are none.
pub fn account_for_slot(accounts: &[Account], slot: usize) -> Option<&Account> {
    if accounts.is_empty() {
        return None;
    }
    accounts.get(slot % accounts.len())
}

/// This machine's host name (the pod name in a cluster).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sidecar".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_parse_to_the_same_accounts() {
        let csv = parse_accounts(" u1:p1 , u2:p:2 ").expect("csv");
        let json = parse_accounts(
            r#"[{"username":"u1","password":"p1"},{"username":"u2","password":"p:2"}]"#,
        )
        .expect("json");
        assert_eq!(csv, json);
        assert_eq!(csv[1].password, "p:2");
        assert!(parse_accounts("  ").expect("empty").is_empty());
    }

    #[test]
    fn errors_never_echo_the_text() {
        for bad in [
            "user-only-secretpw",
            "u1:p1,:secretpw",
            "u1:",
            r#"[{"username":"u","pass":"secretpw"}]"#,
        ] {
            let err = parse_accounts(bad).expect_err(bad);
            let text = err.to_string();
            assert!(
                !text.contains("secretpw") && !text.contains("user-only"),
                "{text}"
            );
        }
        assert_eq!(
            parse_accounts("a:b,nocolon"),
            Err(AccountError::MissingSeparator { index: 2 })
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let a = Account {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn sources_in_order_and_half_accounts_refused() {
        let src = AccountSources {
            list: Some("a:1,b:2"),
            username: Some("c"),
            password: Some("3"),
            ..Default::default()
        };
        assert_eq!(load_accounts(&src).expect("list").len(), 2);
        let src = AccountSources {
            username: Some("c"),
            password: Some("3"),
            ..Default::default()
        };
        assert_eq!(load_accounts(&src).expect("single")[0].username, "c");
        let src = AccountSources {
            username: Some("c"),
            ..Default::default()
        };
        assert_eq!(load_accounts(&src), Err(AccountError::HalfAccount));
        assert!(
            load_accounts(&AccountSources::default())
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn slots_come_from_setting_or_host_ordinal() {
        assert_eq!(account_slot("auto", "lingma-x-3"), Ok(3));
        assert_eq!(account_slot("auto", "laptop"), Ok(0));
        assert_eq!(account_slot("5", "lingma-x-3"), Ok(5));
        assert_eq!(account_slot("five", "x"), Err(AccountError::BadSlot));
        let accounts = parse_accounts("a:1,b:2").expect("csv");
        assert_eq!(
            account_for_slot(&accounts, 3).map(|a| a.username.as_str()),
            Some("b")
        );
        assert!(account_for_slot(&[], 0).is_none());
    }
}

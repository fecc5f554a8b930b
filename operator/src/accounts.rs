//! The accounts of the accounts Secret. The reconciler needs only how many there are (replica i
//! uses account i mod n); the `select-account` init step keeps only the pod's own account, so
//! each Lingma container sees one. Nothing read here is ever logged.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountsError {
    #[error("the accounts value is not UTF-8")]
    NotUtf8,
    #[error("the accounts value holds no account")]
    Empty,
    #[error("account {0} is not `username:password` or lacks a field")]
    Malformed(usize),
}

#[derive(Deserialize, Serialize)]
struct JsonAccount {
    username: String,
    password: String,
}

/// Parses CSV or JSON accounts, in order. Each error names a position, never a value.
fn parse_accounts(raw: &[u8]) -> Result<Vec<JsonAccount>, AccountsError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| AccountsError::NotUtf8)?
        .trim();
    let accounts: Vec<JsonAccount> = if text.starts_with('[') {
        // The error of serde_json may quote the input; it is replaced, not forwarded.
        serde_json::from_str(text).map_err(|_| AccountsError::Malformed(0))?
    } else {
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, entry)| match entry.split_once(':') {
                Some((u, p)) => Ok(JsonAccount {
                    username: u.to_owned(),
                    password: p.to_owned(),
                }),
                None => Err(AccountsError::Malformed(i)),
            })
            .collect::<Result<_, _>>()?
    };
    if let Some(i) = accounts
        .iter()
        .position(|a| a.username.is_empty() || a.password.is_empty())
    {
        return Err(AccountsError::Malformed(i));
    }
    if accounts.is_empty() {
        return Err(AccountsError::Empty);
    }
    Ok(accounts)
}

/// The accounts value holding only account `ordinal mod n`, as a one-element JSON list (a
/// format the sidecar reads; with one account its slot is 0 whatever its ordinal).
pub fn select_account(raw: &[u8], ordinal: u32) -> Result<Vec<u8>, AccountsError> {
    let mut accounts = parse_accounts(raw)?;
    let slot = usize::try_from(ordinal).unwrap_or(usize::MAX) % accounts.len();
    let own = accounts.swap_remove(slot);
    serde_json::to_vec(&[own]).map_err(|_| AccountsError::Malformed(slot))
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("pod name {0:?} ends in no ordinal")]
    NoOrdinal(String),
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("writing {0}: {1}")]
    Write(String, std::io::Error),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}

/// The `select-account` init step: reads every account from `input` (the Secret, mounted only
/// in the init container) and writes the pod's own to `output` (an in-memory volume the
/// Lingma container mounts).
pub fn select_account_file(input: &Path, output: &Path, pod_name: &str) -> Result<(), SelectError> {
    let ordinal = pod_name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .ok_or_else(|| SelectError::NoOrdinal(pod_name.to_owned()))?;
    let raw =
        std::fs::read(input).map_err(|e| SelectError::Read(input.display().to_string(), e))?;
    let own = select_account(&raw, ordinal)?;
    std::fs::write(output, own).map_err(|e| SelectError::Write(output.display().to_string(), e))
}

/// Number of accounts in CSV `u1:p1,u2:p2` or JSON `[{"username","password"}]`.
pub fn count_accounts(raw: &[u8]) -> Result<usize, AccountsError> {
    parse_accounts(raw).map(|a| a.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_csv_and_json() {
        assert_eq!(count_accounts(b"u1:p1,u2:p2"), Ok(2));
        assert_eq!(count_accounts(b" u1:p:with:colons \n"), Ok(1));
        assert_eq!(
            count_accounts(br#"[{"username":"a","password":"b"},{"username":"c","password":"d"},{"username":"e","password":"f"}]"#),
            Ok(3)
        );
    }

    #[test]
    fn rejects_bad_values_without_echoing_them() {
        assert_eq!(count_accounts(b""), Err(AccountsError::Empty));
        assert_eq!(
            count_accounts(b"u1:p1,secretonly"),
            Err(AccountsError::Malformed(1))
        );
        assert_eq!(
            count_accounts(br#"[{"username":"a"}]"#),
            Err(AccountsError::Malformed(0))
        );
        let message = count_accounts(b"hunter2")
            .expect_err("malformed")
            .to_string();
        assert!(!message.contains("hunter2"));
    }

    fn only(raw: &[u8], ordinal: u32) -> serde_json::Value {
        serde_json::from_slice(&select_account(raw, ordinal).expect("selects")).expect("json")
    }

    #[test]
    fn each_pod_keeps_only_the_account_of_its_slot() {
        assert_eq!(
            only(b"u0:p0,u1:p1,u2:p2", 1),
            serde_json::json!([{"username": "u1", "password": "p1"}])
        );
        assert_eq!(
            only(b"u0:p0,u1:p1,u2:p2", 5),
            serde_json::json!([{"username": "u2", "password": "p2"}]),
            "ordinal 5 over 3 accounts is slot 2"
        );
        assert_eq!(
            only(br#"[{"username":"a","password":"b:c"}]"#, 7),
            serde_json::json!([{"username": "a", "password": "b:c"}])
        );
        let kept = select_account(b"u0:p0,u1:p1", 0).expect("selects");
        assert_eq!(
            count_accounts(&kept),
            Ok(1),
            "the sidecar reads what is kept"
        );
        assert!(!String::from_utf8_lossy(&kept).contains("p1"));
    }

    #[test]
    fn the_init_step_reads_its_ordinal_from_the_pod_name() {
        let dir = std::env::temp_dir().join(format!("select-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (input, output) = (dir.join("all"), dir.join("own"));
        std::fs::write(&input, "u0:p0,u1:p1").expect("write");
        select_account_file(&input, &output, "team-3").expect("selects");
        let own: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&output).expect("read")).expect("json");
        assert_eq!(own[0]["username"], "u1");
        assert!(matches!(
            select_account_file(&input, &output, "team"),
            Err(SelectError::NoOrdinal(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}

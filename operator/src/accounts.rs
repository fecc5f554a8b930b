//! Counting the accounts of the accounts Secret. The operator needs only how many there are
//! (replica i uses account i mod n); the sidecar parses them for real. Nothing read here is
//! ever logged.

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountsError {
    #[error("the accounts value is not UTF-8")]
    NotUtf8,
    #[error("the accounts value holds no account")]
    Empty,
    #[error("account {0} is not `username:password` or lacks a field")]
    Malformed(usize),
}

#[derive(Deserialize)]
struct JsonAccount {
    username: String,
    password: String,
}

/// Number of accounts in CSV `u1:p1,u2:p2` or JSON `[{"username","password"}]`.
pub fn count_accounts(raw: &[u8]) -> Result<usize, AccountsError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| AccountsError::NotUtf8)?
        .trim();
    if text.starts_with('[') {
        // The error of serde_json may quote the input; it is replaced, not forwarded.
        let accounts: Vec<JsonAccount> =
            serde_json::from_str(text).map_err(|_| AccountsError::Malformed(0))?;
        for (i, a) in accounts.iter().enumerate() {
            if a.username.is_empty() || a.password.is_empty() {
                return Err(AccountsError::Malformed(i));
            }
        }
        return non_empty(accounts.len());
    }
    let mut n = 0;
    for (i, entry) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        match entry.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => n += 1,
            _ => return Err(AccountsError::Malformed(i)),
        }
    }
    non_empty(n)
}

fn non_empty(n: usize) -> Result<usize, AccountsError> {
    if n == 0 {
        Err(AccountsError::Empty)
    } else {
        Ok(n)
    }
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
}

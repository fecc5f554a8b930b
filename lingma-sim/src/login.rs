//! Login state machine: logged-out (status 1) -> logged-in (2) through the callback, the
//! form, `auth/device_login` or the control API; logged-in -> expired (status 1 again, and
//! chats fail with 401) through the control API. Persisted in `workDir/cache/user` (plain
//! JSON: this is a test double and stores no real secret) next to a stable `cache/id`.

use crate::persist::{now_ms, write_atomically};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// Login URLs (`state`s) remembered at once; older ones stop working.
const PENDING_STATES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginPhase {
    #[default]
    LoggedOut,
    LoggedIn,
    Expired,
}

impl LoginPhase {
    pub fn name(self) -> &'static str {
        match self {
            LoginPhase::LoggedOut => "logged_out",
            LoginPhase::LoggedIn => "logged_in",
            LoginPhase::Expired => "expired",
        }
    }
}

/// What `cache/user` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserRecord {
    pub phase: LoginPhase,
    pub username: String,
    pub user_id: String,
    pub user_type: String,
    pub logged_in_at: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("unknown or expired login state")]
    UnknownState,
    #[error("invalid authorization code")]
    BadCode,
    #[error("incorrect account name or password")]
    BadCredentials,
    #[error("device login needs a token and a user")]
    MissingToken,
}

#[derive(Debug, Default)]
struct Inner {
    user: UserRecord,
    /// `state`s handed out by `auth/login`, oldest first.
    pending: VecDeque<String>,
    /// Authorization codes minted by the form, by `state`.
    codes: HashMap<String, String>,
}

#[derive(Debug)]
pub struct LoginStore {
    user_path: Option<PathBuf>,
    machine_id: String,
    accept_username: String,
    accept_password: String,
    inner: Mutex<Inner>,
}

impl LoginStore {
    /// Load from `workDir/cache` (or start fresh); `logged_in` forces a login at start.
    pub fn open(
        work_dir: Option<&std::path::Path>,
        accept_username: &str,
        accept_password: &str,
        logged_in: bool,
    ) -> std::io::Result<Self> {
        let cache = work_dir.map(|d| d.join("cache"));
        let machine_id = match &cache {
            Some(dir) => load_or_create_machine_id(dir)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        let user_path = cache.map(|d| d.join("user"));
        let user = user_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<UserRecord>(&bytes).ok())
            .unwrap_or_default();
        let store = Self {
            user_path,
            machine_id,
            accept_username: accept_username.to_owned(),
            accept_password: accept_password.to_owned(),
            inner: Mutex::new(Inner {
                user,
                ..Inner::default()
            }),
        };
        if logged_in && store.phase() != LoginPhase::LoggedIn {
            store.log_in(None)?;
        }
        Ok(store)
    }

    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    pub fn phase(&self) -> LoginPhase {
        self.inner.lock().user.phase
    }

    pub fn user(&self) -> UserRecord {
        self.inner.lock().user.clone()
    }

    /// Log in as `username` (default: the accepted username).
    pub fn log_in(&self, username: Option<&str>) -> std::io::Result<()> {
        let username = username
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.accept_username);
        let user = UserRecord {
            phase: LoginPhase::LoggedIn,
            username: username.to_owned(),
            user_id: user_id_of(username),
            user_type: "personal_standard".to_owned(),
            logged_in_at: now_ms(),
        };
        self.store(user)
    }

    pub fn log_out(&self) -> std::io::Result<()> {
        self.store(UserRecord::default())
    }

    /// The token "expires": status turns 1 and chats fail with 401 until a new login.
    pub fn expire(&self) -> std::io::Result<()> {
        let mut user = self.user();
        user.phase = LoginPhase::Expired;
        self.store(user)
    }

    fn store(&self, user: UserRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&user).map_err(std::io::Error::other)?;
        let mut inner = self.inner.lock();
        if let Some(path) = &self.user_path {
            write_atomically(path, &bytes)?;
        }
        inner.user = user;
        Ok(())
    }

    /// A new `state` for a login URL.
    pub fn begin_login(&self) -> String {
        let state = uuid::Uuid::new_v4().simple().to_string();
        let mut inner = self.inner.lock();
        if inner.pending.len() == PENDING_STATES
            && let Some(old) = inner.pending.pop_front()
        {
            inner.codes.remove(&old);
        }
        inner.pending.push_back(state.clone());
        state
    }

    pub fn is_pending(&self, state: &str) -> bool {
        self.inner.lock().pending.iter().any(|s| s == state)
    }

    /// The form's check: right state and credentials give an authorization code for the
    /// callback.
    pub fn check_credentials(
        &self,
        state: &str,
        username: &str,
        password: &str,
    ) -> Result<String, LoginError> {
        if !self.is_pending(state) {
            return Err(LoginError::UnknownState);
        }
        let user_ok = username.as_bytes().ct_eq(self.accept_username.as_bytes());
        let pass_ok = password.as_bytes().ct_eq(self.accept_password.as_bytes());
        if !bool::from(user_ok & pass_ok) {
            return Err(LoginError::BadCredentials);
        }
        let code = uuid::Uuid::new_v4().simple().to_string();
        self.inner
            .lock()
            .codes
            .insert(state.to_owned(), code.clone());
        Ok(code)
    }

    /// The callback: the state must be pending and, when `code_required` (form mode), come
    /// with the code the form minted. Consumes the state.
    pub fn complete_callback(
        &self,
        state: &str,
        code: Option<&str>,
        code_required: bool,
    ) -> Result<(), LoginError> {
        {
            let mut inner = self.inner.lock();
            let Some(pos) = inner.pending.iter().position(|s| s == state) else {
                return Err(LoginError::UnknownState);
            };
            if code_required {
                let expected = inner.codes.get(state).cloned().unwrap_or_default();
                let given = code.unwrap_or_default();
                if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    return Err(LoginError::BadCode);
                }
            }
            inner.pending.remove(pos);
            inner.codes.remove(state);
        }
        self.log_in(None).map_err(|_| LoginError::UnknownState)
    }

    /// `auth/device_login`: tokens obtained elsewhere; any non-empty token is accepted.
    pub fn device_login(
        &self,
        token: &str,
        username: &str,
        user_id: &str,
    ) -> Result<(), LoginError> {
        if token.is_empty() || (username.is_empty() && user_id.is_empty()) {
            return Err(LoginError::MissingToken);
        }
        let name = if username.is_empty() {
            user_id
        } else {
            username
        };
        self.log_in(Some(name))
            .map_err(|_| LoginError::MissingToken)
    }

    /// The `auth/status` result. The tokens are fakes, so clients can check they never leak.
    pub fn status_json(&self) -> Value {
        let user = self.user();
        match user.phase {
            LoginPhase::LoggedIn => json!({
                "status": 2,
                "loginState": "logged_in",
                "name": user.username,
                "id": user.user_id,
                "accountId": user.user_id,
                "token": format!("sim-token-{}", user.user_id),
                "refreshToken": format!("sim-refresh-{}", user.user_id),
                "expireTime": user.logged_in_at + 60 * 24 * 3600 * 1000,
                "userType": user.user_type,
                "whitelist": 3,
                "cloudType": "public",
                "privacyPolicyAgreed": true,
                "quota": {},
                "orgId": "",
                "orgName": "",
                "email": user.username,
            }),
            LoginPhase::Expired => json!({
                "status": 1,
                "loginState": "expired",
                "expired": true,
                "name": user.username,
                "id": user.user_id,
                "whitelist": 3,
            }),
            LoginPhase::LoggedOut => json!({
                "status": 1,
                "loginState": "logged_out",
                "whitelist": 0,
            }),
        }
    }
}

fn user_id_of(username: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(username.as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n % 10_000_000_000).to_string()
}

fn load_or_create_machine_id(cache: &std::path::Path) -> std::io::Result<String> {
    let path = cache.join("id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

/// What `lingma-sim status -o json --workDir DIR` prints (keys of `Lingma status`).
pub fn status_of_work_dir(work_dir: &std::path::Path) -> Value {
    let user = std::fs::read(work_dir.join("cache").join("user"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<UserRecord>(&bytes).ok())
        .unwrap_or_default();
    let logged_in = user.phase == LoginPhase::LoggedIn;
    json!({
        "logged_in": logged_in,
        "username": if logged_in { user.username } else { String::new() },
        "user_type": if logged_in { user.user_type } else { String::new() },
        "version": crate::VERSION,
        "login_state": user.phase.name(),
        "simulator": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_needs_a_pending_state_and_form_code() {
        let store = LoginStore::open(None, "u", "p", false).expect("open");
        assert_eq!(store.phase(), LoginPhase::LoggedOut);
        assert_eq!(
            store.complete_callback("nope", None, false),
            Err(LoginError::UnknownState)
        );
        let state = store.begin_login();
        assert_eq!(
            store.complete_callback(&state, Some("x"), true),
            Err(LoginError::BadCode)
        );
        assert_eq!(
            store.check_credentials(&state, "u", "wrong"),
            Err(LoginError::BadCredentials)
        );
        let code = store.check_credentials(&state, "u", "p").expect("code");
        store
            .complete_callback(&state, Some(&code), true)
            .expect("login");
        assert_eq!(store.phase(), LoginPhase::LoggedIn);
        assert_eq!(store.status_json()["status"], 2);
        store.expire().expect("expire");
        assert_eq!(store.status_json()["status"], 1);
        assert_eq!(store.status_json()["loginState"], "expired");
    }
}

//! The bearer token of the mux link, as both ends hold it: fixed (SIDECAR_TOKEN) or read
//! from a file (SIDECAR_TOKEN_FILE, a mounted Secret) that may be replaced at any time.
//! A file is read again at every use (a new connection, a login call: rare, and the file is
//! a few bytes), so a rotated Secret takes effect without a restart. A file that turns
//! unreadable or empty keeps the last good token: a half-written rotation never opens the
//! link to anyone.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct SidecarToken {
    source: Source,
    last_good: Mutex<Option<String>>,
}

enum Source {
    Fixed(Option<String>),
    File(PathBuf),
}

/// Why a token file gave no token at start.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {kind}")]
    Unreadable {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("{0} is empty")]
    Empty(String),
}

impl SidecarToken {
    /// A token that never changes; `None` (or blank) = no token.
    pub fn fixed(token: Option<&str>) -> Self {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        Self {
            source: Source::Fixed(token.map(str::to_owned)),
            last_good: Mutex::new(None),
        }
    }

    /// A token file, read now (an unreadable or empty file at start is an error).
    pub fn file(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        let first = read(&path)?;
        Ok(Self {
            source: Source::File(path),
            last_good: Mutex::new(Some(first)),
        })
    }

    /// The token to present or expect now.
    pub fn current(&self) -> Option<String> {
        match &self.source {
            Source::Fixed(token) => token.clone(),
            Source::File(path) => {
                let mut last = self.last_good.lock().unwrap_or_else(|e| e.into_inner());
                if let Ok(fresh) = read(path) {
                    *last = Some(fresh);
                }
                last.clone()
            }
        }
    }

    /// Whether any token is configured (a file always yields one).
    pub fn is_set(&self) -> bool {
        match &self.source {
            Source::Fixed(token) => token.is_some(),
            Source::File(_) => true,
        }
    }
}

impl std::fmt::Debug for SidecarToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Fixed(t) => write!(f, "SidecarToken(fixed, set: {})", t.is_some()),
            Source::File(p) => write!(f, "SidecarToken(file {})", p.display()),
        }
    }
}

fn read(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Unreadable {
        path: path.display().to_string(),
        kind: e.kind(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.display().to_string()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_again_and_a_bad_rotation_keeps_the_last_token() {
        let dir = std::env::temp_dir().join(format!("mux-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "one\n").expect("write");
        let token = SidecarToken::file(&path).expect("readable");
        assert_eq!(token.current().as_deref(), Some("one"));
        std::fs::write(&path, "two").expect("write");
        assert_eq!(token.current().as_deref(), Some("two"));
        std::fs::write(&path, "  \n").expect("write");
        assert_eq!(token.current().as_deref(), Some("two"));
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(token.current().as_deref(), Some("two"));
        assert!(SidecarToken::file(&path).is_err());
        std::fs::write(&path, "").expect("write");
        assert!(matches!(
            SidecarToken::file(&path),
            Err(TokenFileError::Empty(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fixed_tokens_never_change() {
        assert_eq!(
            SidecarToken::fixed(Some(" t ")).current().as_deref(),
            Some("t")
        );
        assert_eq!(SidecarToken::fixed(Some("")).current(), None);
        assert!(!SidecarToken::fixed(None).is_set());
        assert!(!format!("{:?}", SidecarToken::fixed(Some("secret"))).contains("secret"));
    }
}

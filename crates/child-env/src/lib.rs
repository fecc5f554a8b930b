//! The environment a child process inherits: an allowlist, never everything.
//!
//! A sidecar's environment holds secrets (`SIDECAR_TOKEN`, `LINGMA_PASSWORD`,
//! `LINGMA_ACCOUNTS`, in single-host mode `API_KEYS` too); the closed Lingma binary, the
//! browser and its driver need none of them. [`restrict`] clears a command's environment and
//! gives back only what a process needs to run at all (search path, home, locale, time zone,
//! temp dir, proxy and CA settings) plus what the caller names on top.
//!
//! Everything here takes the parent environment as an argument, so the rules are tested by
//! value; [`restrict`] reads the real one.

use std::ffi::{OsStr, OsString};

/// Variables every child keeps: what a process needs to find programs, its home, its locale,
/// its time zone and a temp dir, the network settings of the host (proxies, CA bundle), and
/// how to format output.
pub const BASE_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    // Output conventions, no data: plain log lines, backtraces on a crash.
    "NO_COLOR",
    "RUST_BACKTRACE",
];

/// Prefixes every child keeps (`LC_ALL`, `LC_CTYPE`, ...).
pub const BASE_PREFIXES: &[&str] = &["LC_"];

/// What a child may inherit beyond [`BASE_NAMES`]: extra names and name prefixes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowlist<'a> {
    pub names: &'a [&'a str],
    pub prefixes: &'a [&'a str],
}

impl Allowlist<'_> {
    /// Only the base variables.
    pub const BASE: Allowlist<'static> = Allowlist {
        names: &[],
        prefixes: &[],
    };

    /// Whether a child may inherit `name`.
    pub fn allows(&self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        BASE_NAMES.contains(&name)
            || BASE_PREFIXES.iter().any(|p| name.starts_with(p))
            || self.names.contains(&name)
            || self.prefixes.iter().any(|p| name.starts_with(p))
    }

    /// The variables of `parent` a child may inherit, in their order.
    pub fn filter(
        &self,
        parent: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        parent
            .into_iter()
            .filter(|(name, _)| self.allows(name))
            .collect()
    }
}

/// Clears `command`'s environment and gives it back the allowed variables of this process.
/// Variables the caller sets on the command afterwards are added on top.
pub fn restrict(command: &mut std::process::Command, allow: &Allowlist<'_>) {
    command.env_clear();
    command.envs(allow.filter(std::env::vars_os()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn names(vars: &[(OsString, OsString)]) -> Vec<String> {
        vars.iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn secrets_are_dropped_and_the_basics_kept() {
        let parent = env(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("SIDECAR_TOKEN", "tok"),
            ("LINGMA_PASSWORD", "pw"),
            ("LINGMA_ACCOUNTS", "u:pw"),
            ("API_KEYS", "k1"),
            ("LINGMA_SIM_FAULT", "error"),
        ]);
        let kept = Allowlist::BASE.filter(parent.clone());
        assert_eq!(names(&kept), ["PATH", "HOME", "LC_ALL", "https_proxy"]);

        let sim = Allowlist {
            names: &[],
            prefixes: &["LINGMA_SIM_"],
        };
        let kept = sim.filter(parent);
        assert_eq!(
            names(&kept),
            ["PATH", "HOME", "LC_ALL", "https_proxy", "LINGMA_SIM_FAULT"]
        );
    }

    #[test]
    fn a_prefix_is_not_a_name_match_and_non_utf8_names_are_dropped() {
        use std::os::unix::ffi::OsStringExt;
        let allow = Allowlist {
            names: &["DISPLAY"],
            prefixes: &[],
        };
        assert!(allow.allows(OsStr::new("DISPLAY")));
        assert!(!allow.allows(OsStr::new("DISPLAY_SECRET")));
        assert!(!allow.allows(OsStr::new("PATHX")));
        assert!(!allow.allows(&OsString::from_vec(vec![0xff, b'A'])));
    }

    #[test]
    fn restrict_replaces_the_inherited_environment() {
        let mut command = std::process::Command::new("env");
        restrict(&mut command, &Allowlist::BASE);
        let output = command.output().expect("run env");
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        // cargo sets CARGO_* for every test binary, so there is something to drop.
        let dropped: Vec<String> = std::env::vars_os()
            .filter(|(name, _)| !Allowlist::BASE.allows(name))
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in &dropped {
            let prefix = format!("{name}=");
            assert!(
                !lines.iter().any(|l| l.starts_with(&prefix)),
                "{name} was inherited"
            );
        }
        if std::env::var_os("PATH").is_some() {
            assert!(lines.iter().any(|l| l.starts_with("PATH=")), "{text}");
        }
    }
}

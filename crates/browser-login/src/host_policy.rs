//! Where the browser may type the password: pages on the configured hosts
//! (AUTO_LOGIN_ALLOWED_HOSTS), over https only. Plain http is accepted only for loopback
//! hosts, and only when the caller opts in (AUTO_LOGIN_ALLOW_HTTP_LOOPBACK: the local test
//! pages and the simulator's form on 127.0.0.1).
//!
//! A refusal names the host (not the URL: its path and query can carry tokens) and the
//! setting to change, so an operator can tell a misconfiguration from an attack.

use std::net::IpAddr;

use crate::error::{BrowserLoginError, FailureReason};

/// Alibaba Cloud's account and Lingma login hosts (and their subdomains).
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &["alibabacloud.com", "aliyun.com"];

/// The allowlist of one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostPolicy<'a> {
    hosts: &'a [String],
    http_loopback: bool,
}

impl<'a> HostPolicy<'a> {
    pub(crate) fn new(hosts: &'a [String], http_loopback: bool) -> Self {
        Self {
            hosts,
            http_loopback,
        }
    }

    /// Whether a page at `url` may receive the credentials; `what` names the page in the
    /// refusal ("the login URL", "the login form", ...).
    pub(crate) fn check(&self, url: &url::Url, what: &str) -> Result<(), BrowserLoginError> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(refused(format!(
                    "{what} has no host ({} URL); only https pages on AUTO_LOGIN_ALLOWED_HOSTS get the password",
                    url.scheme()
                )));
            }
        };
        if !self.hosts.iter().any(|entry| matches_entry(&host, entry)) {
            return Err(refused(format!(
                "{what} is on {host}, which is not in AUTO_LOGIN_ALLOWED_HOSTS"
            )));
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.http_loopback && is_loopback(&host) => Ok(()),
            "http" if is_loopback(&host) => Err(refused(format!(
                "{what} on {host} is plain http; set AUTO_LOGIN_ALLOW_HTTP_LOOPBACK=true only for the simulator or tests"
            ))),
            scheme => Err(refused(format!("{what} on {host} is {scheme}, not https"))),
        }
    }

    /// [`HostPolicy::check`] for an origin (`https://host:port`) reported by the page.
    pub(crate) fn check_origin(&self, origin: &str, what: &str) -> Result<(), BrowserLoginError> {
        match url::Url::parse(origin) {
            Ok(url) => self.check(&url, what),
            Err(_) => Err(refused(format!(
                "{what} has an opaque origin; only https pages on AUTO_LOGIN_ALLOWED_HOSTS get the password"
            ))),
        }
    }
}

/// An entry matches its host and, for a domain name, every subdomain: `alibabacloud.com`
/// covers `account.alibabacloud.com`. A leading `*.` or `.` is accepted and means the same.
fn matches_entry(host: &str, entry: &str) -> bool {
    let entry = entry
        .trim()
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if entry.is_empty() {
        return false;
    }
    if host == entry {
        return true;
    }
    entry.parse::<IpAddr>().is_err()
        && host.parse::<IpAddr>().is_err()
        && host
            .strip_suffix(&entry)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refused(detail: String) -> BrowserLoginError {
    BrowserLoginError::new(FailureReason::DisallowedHost, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(policy: HostPolicy<'_>, url: &str) -> Result<(), String> {
        let url = url::Url::parse(url).expect("test URL");
        policy
            .check(&url, "the page")
            .map_err(|e| e.detail().to_owned())
    }

    #[test]
    fn https_on_a_listed_domain_or_its_subdomains_only() {
        let list = hosts(DEFAULT_ALLOWED_HOSTS);
        let policy = HostPolicy::new(&list, false);
        assert!(
            check(
                policy,
                "https://account.alibabacloud.com/login/login.htm?x=1"
            )
            .is_ok()
        );
        assert!(check(policy, "https://lingma.alibabacloud.com/lingma/login").is_ok());
        assert!(check(policy, "https://signin.aliyun.com/").is_ok());
        assert!(check(policy, "https://ALIYUN.com:8443/").is_ok());
        let err =
            check(policy, "https://alibabacloud.com.evil.example/").expect_err("suffix trick");
        assert!(
            err.contains("alibabacloud.com.evil.example")
                && err.contains("AUTO_LOGIN_ALLOWED_HOSTS"),
            "{err}"
        );
        assert!(check(policy, "https://evilalibabacloud.com/").is_err());
        let err = check(policy, "http://account.alibabacloud.com/").expect_err("http");
        assert!(err.contains("not https"), "{err}");
        assert!(check(policy, "file:///etc/passwd").is_err());
    }

    #[test]
    fn loopback_http_needs_the_opt_in_and_the_host_listed() {
        let list = hosts(&["127.0.0.1"]);
        let err = check(HostPolicy::new(&list, false), "http://127.0.0.1:9/login")
            .expect_err("no opt-in");
        assert!(err.contains("AUTO_LOGIN_ALLOW_HTTP_LOOPBACK"), "{err}");
        assert!(check(HostPolicy::new(&list, true), "http://127.0.0.1:9/login").is_ok());
        let err = check(HostPolicy::new(&list, true), "http://localhost:9/login")
            .expect_err("not listed");
        assert!(err.contains("localhost"), "{err}");
        let list = hosts(&["example.com"]);
        assert!(check(HostPolicy::new(&list, true), "http://example.com/").is_err());
        let list = hosts(&["[::1]", "*.example.com"]);
        assert!(check(HostPolicy::new(&list, true), "http://[::1]:8/").is_ok());
        assert!(check(HostPolicy::new(&list, true), "https://a.example.com/").is_ok());
    }

    #[test]
    fn an_ip_entry_matches_only_itself_and_origins_are_checked_too() {
        let list = hosts(&["10.0.0.1"]);
        let policy = HostPolicy::new(&list, false);
        assert!(check(policy, "https://10.0.0.1/").is_ok());
        assert!(check(policy, "https://110.0.0.1/").is_err());
        assert!(
            policy
                .check_origin("https://10.0.0.1:443", "the form")
                .is_ok()
        );
        assert!(policy.check_origin("null", "the form").is_err());
        let none: Vec<String> = Vec::new();
        assert!(check(HostPolicy::new(&none, true), "https://10.0.0.1/").is_err());
    }
}

//! Sees every request the browser sent, from chromedriver's performance log (Chromium's
//! DevTools `Network.requestWillBeSent` events), so the callback is caught even when
//! Lingma's callback page redirects onwards before the next look at the address bar.
//!
//! The log holds raw request data (URLs with tokens, form bodies with the password): it is
//! parsed here and dropped, never logged or returned except the one callback URL.

use fantoccini::Client;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::Value;

/// chromedriver's (non-W3C, long-standing) "get log" endpoint; reading drains the buffer.
#[derive(Debug)]
struct ReadPerformanceLog;

impl WebDriverCompatibleCommand for ReadPerformanceLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"performance"}"#.to_owned()),
        )
    }
}

/// The first request to a URL `is_callback` accepts among the events logged since the last
/// call, if any.
pub(crate) async fn find_request(
    client: &Client,
    is_callback: impl Fn(&url::Url) -> bool,
) -> Result<Option<String>, CmdError> {
    let entries = client.issue_cmd(ReadPerformanceLog).await?;
    let Value::Array(entries) = entries else {
        return Ok(None);
    };
    Ok(entries
        .iter()
        .filter_map(|entry| entry.get("message")?.as_str())
        .filter_map(|message| serde_json::from_str::<Value>(message).ok())
        .filter(|event| event["message"]["method"] == "Network.requestWillBeSent")
        .filter_map(|event| {
            event["message"]["params"]["request"]["url"]
                .as_str()
                .map(str::to_owned)
        })
        .find(|requested| url::Url::parse(requested).is_ok_and(|u| is_callback(&u))))
}

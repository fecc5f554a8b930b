//! The login driver that can run here: it asks Lingma for the login URL and, when that URL
//! points at Lingma's own loopback HTTP port (the simulator), follows it with plain HTTP:
//! a GET that lands on the callback logs in (callback mode); a page with a password form
//! is filled with the account and posted (form mode). Real Lingma's URL points at Alibaba
//! Cloud and needs a browser: this driver then fails with `BrowserRequired` (issue 7 brings
//! the browser driver). No response body or URL is ever logged: they carry login state.

use super::{LoginDriver, LoginError};
use crate::accounts::Account;
use futures_util::future::BoxFuture;
use lingma_protocol::wire::login_url_from_result;
use lingma_protocol::{LingmaClient, methods};
use reqwest::{StatusCode, Url};
use std::time::Duration;

pub struct LoopbackLoginDriver {
    http: reqwest::Client,
}

impl LoopbackLoginDriver {
    pub fn new(request_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { http }
    }

    async fn follow(&self, url: Url, account: Option<&Account>) -> Result<(), LoginError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|_| LoginError::CallbackRefused)?;
        let page_url = resp.url().clone();
        let body = check_status(resp).await?;
        let Some(form) = PasswordForm::find(&body) else {
            return if mentions_challenge(&body) {
                Err(LoginError::ChallengeRequired)
            } else {
                Ok(())
            };
        };
        let account = account.ok_or(LoginError::NoAccount)?;
        let action = page_url
            .join(&form.action)
            .map_err(|_| LoginError::CallbackRefused)?;
        if !is_loopback_url(&action) {
            return Err(LoginError::BrowserRequired);
        }
        let mut fields = form.hidden;
        fields.push((form.username_field, account.username.clone()));
        fields.push((form.password_field, account.password.clone()));
        let resp = self
            .http
            .post(action)
            .form(&fields)
            .send()
            .await
            .map_err(|_| LoginError::CallbackRefused)?;
        let body = check_status(resp).await?;
        if PasswordForm::find(&body).is_some() {
            // The form came back: the credentials were not accepted.
            return Err(LoginError::WrongCredentials);
        }
        if mentions_challenge(&body) {
            return Err(LoginError::ChallengeRequired);
        }
        Ok(())
    }
}

async fn check_status(resp: reqwest::Response) -> Result<String, LoginError> {
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(LoginError::WrongCredentials);
    }
    if !status.is_success() {
        return Err(LoginError::CallbackRefused);
    }
    Ok(resp.text().await.unwrap_or_default())
}

fn mentions_challenge(body: &str) -> bool {
    body.to_ascii_lowercase().contains("captcha")
}

fn is_loopback_url(url: &Url) -> bool {
    matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    )
}

impl LoginDriver for LoopbackLoginDriver {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn needs_account(&self) -> bool {
        // Callback mode needs none; form mode asks for it when it sees the form.
        false
    }

    fn login<'a>(
        &'a self,
        client: &'a LingmaClient,
        account: Option<&'a Account>,
    ) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            let result: serde_json::Value = client
                .call(methods::AUTH_LOGIN, &serde_json::json!({}))
                .await
                .map_err(|_| LoginError::Rpc)?;
            let url = login_url_from_result(&result).ok_or(LoginError::NoLoginUrl)?;
            let url = Url::parse(&url).map_err(|_| LoginError::NoLoginUrl)?;
            if !is_loopback_url(&url) {
                return Err(LoginError::BrowserRequired);
            }
            self.follow(url, account).await
        })
    }
}

/// A login form with a password field, as far as a plain HTML scan can tell.
#[derive(Debug, PartialEq)]
struct PasswordForm {
    action: String,
    hidden: Vec<(String, String)>,
    username_field: String,
    password_field: String,
}

impl PasswordForm {
    fn find(html: &str) -> Option<Self> {
        let form_start = html.find("<form")?;
        let form_html = &html[form_start..];
        let form_end = form_html.find("</form>").unwrap_or(form_html.len());
        let form_html = &form_html[..form_end];
        let form_tag = &form_html[..form_html.find('>')?];
        let action = attr(form_tag, "action").unwrap_or_default();
        let mut hidden = Vec::new();
        let mut username_field = None;
        let mut password_field = None;
        for input in form_html.split("<input").skip(1) {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            let Some(name) = attr(tag, "name") else {
                continue;
            };
            match attr(tag, "type").as_deref().unwrap_or("text") {
                "hidden" => hidden.push((name, attr(tag, "value").unwrap_or_default())),
                "password" => password_field = password_field.or(Some(name)),
                "text" | "email" => username_field = username_field.or(Some(name)),
                _ => {}
            }
        }
        Some(Self {
            action,
            hidden,
            username_field: username_field.unwrap_or_else(|| "username".to_owned()),
            password_field: password_field?,
        })
    }
}

/// The value of `name="..."` in a tag's text (double quotes, minimal entity decoding).
fn attr(tag: &str, name: &str) -> Option<String> {
    let pattern = format!("{name}=\"");
    let mut search = 0;
    while let Some(pos) = tag[search..].find(&pattern) {
        let at = search + pos;
        let boundary = at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace();
        let start = at + pattern.len();
        if boundary {
            let end = tag[start..].find('"')? + start;
            return Some(decode_entities(&tag[start..end]));
        }
        search = start;
    }
    None
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_form_fields() {
        let html = r#"<p>x</p><form id="login-form" method="post" action="/login">
  <input type="hidden" name="state" value="a&amp;b">
  <input id="fm-login-id" name="username" type="text" autocomplete="username">
  <input id="fm-login-password" name="password" type="password">
  <button type="submit">Sign In</button></form>"#;
        let form = PasswordForm::find(html).expect("form");
        assert_eq!(form.action, "/login");
        assert_eq!(form.hidden, vec![("state".to_owned(), "a&b".to_owned())]);
        assert_eq!(form.username_field, "username");
        assert_eq!(form.password_field, "password");
        assert!(PasswordForm::find("<p>Login successful</p>").is_none());
        assert!(PasswordForm::find("<form action=\"/x\"><input name=\"q\"></form>").is_none());
    }

    #[test]
    fn attributes_need_a_boundary() {
        assert_eq!(
            attr(r#"input data-name="no" name="yes""#, "name").as_deref(),
            Some("yes")
        );
        assert_eq!(attr("input", "name"), None);
    }

    #[test]
    fn only_loopback_urls_are_followed() {
        let url = |s| Url::parse(s).expect("url");
        assert!(is_loopback_url(&url(
            "http://127.0.0.1:1/auth/callback?state=x"
        )));
        assert!(!is_loopback_url(&url(
            "https://lingma.alibabacloud.com/lingma/login?state=x"
        )));
    }
}

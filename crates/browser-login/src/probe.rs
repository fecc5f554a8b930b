//! Looks at the page (the top document and its frames, cross-origin ones included: WebDriver
//! switches into them, which page JavaScript cannot) and reports what the login loop needs.

use fantoccini::Client;
use fantoccini::error::CmdError;
use serde::Deserialize;

const PROBE_JS: &str = include_str!("probe.js");
/// Alibaba's login form sits in an iframe; two levels is more than any known layout needs.
const MAX_FRAME_DEPTH: usize = 2;
/// Bounds the work per poll on pages with many ad or tracking frames.
const MAX_CONTEXTS: usize = 16;

/// What one browsing context showed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextProbe {
    /// `location.origin` of the context (`"null"` for an opaque one).
    origin: Option<String>,
    /// Origin of the form's explicit http(s) `action`, if it has one.
    action_origin: Option<String>,
    user: bool,
    pass: bool,
    submit: bool,
    captcha: bool,
    mfa: bool,
    error: bool,
    frames: u16,
}

/// What the whole page showed. `form_frame` is the frame path (indices from the top) of the
/// context holding the login form.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageScan {
    pub(crate) form_frame: Option<Vec<u16>>,
    /// Origin of the context holding the form.
    pub(crate) form_origin: Option<String>,
    /// Origin the form posts to, when its `action` names one.
    pub(crate) form_action_origin: Option<String>,
    pub(crate) user: bool,
    pub(crate) pass: bool,
    pub(crate) submit: bool,
    pub(crate) captcha: bool,
    pub(crate) mfa: bool,
    pub(crate) error: bool,
}

/// Probes the top document and its frames, breadth first. Leaves the client in an
/// unspecified frame: callers go through [`enter_frame_path`] before acting.
pub(crate) async fn scan_page(client: &Client) -> Result<PageScan, CmdError> {
    let mut scan = PageScan::default();
    let mut queue: Vec<Vec<u16>> = vec![Vec::new()];
    let mut visited = 0;
    while let Some(path) = (!queue.is_empty()).then(|| queue.remove(0)) {
        if visited == MAX_CONTEXTS {
            break;
        }
        visited += 1;
        if let Err(e) = enter_frame_path(client, &path).await {
            // A frame that went away between two commands is normal while a page loads.
            if path.is_empty() || is_fatal(&e) {
                return Err(e);
            }
            continue;
        }
        let probe = match probe_context(client).await {
            Ok(probe) => probe,
            Err(e) if !path.is_empty() && !is_fatal(&e) => continue,
            Err(e) => return Err(e),
        };
        if scan.form_frame.is_none() && (probe.user || probe.pass) {
            scan.form_frame = Some(path.clone());
            scan.form_origin = probe.origin.clone();
            scan.form_action_origin = probe.action_origin.clone();
            scan.user = probe.user;
            scan.pass = probe.pass;
            scan.submit = probe.submit;
        }
        scan.captcha |= probe.captcha;
        scan.mfa |= probe.mfa;
        scan.error |= probe.error;
        if path.len() < MAX_FRAME_DEPTH {
            for index in 0..probe.frames {
                let mut child = path.clone();
                child.push(index);
                queue.push(child);
            }
        }
    }
    Ok(scan)
}

async fn probe_context(client: &Client) -> Result<ContextProbe, CmdError> {
    let value = client.execute(PROBE_JS, Vec::new()).await?;
    // A document replaced mid-script can return null; treat it as "nothing seen yet".
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// Switches to the top-level document, then down the given frame indices.
pub(crate) async fn enter_frame_path(client: &Client, path: &[u16]) -> Result<(), CmdError> {
    let window = client.window().await?;
    client.switch_to_window(window).await?;
    for &index in path {
        client.enter_frame(index).await?;
    }
    Ok(())
}

/// Errors that mean the browser or chromedriver is gone, as opposed to a page in flux.
pub(crate) fn is_fatal(e: &CmdError) -> bool {
    match e {
        CmdError::Lost(_) | CmdError::Failed(_) | CmdError::FailedC(_) | CmdError::NotW3C(_) => {
            true
        }
        CmdError::Standard(w) => {
            let message = w.message.to_ascii_lowercase();
            e.is_invalid_session_id()
                || e.is_session_not_created()
                || e.is_no_such_window()
                || message.contains("disconnected")
                || message.contains("crash")
                || message.contains("chrome not reachable")
        }
        _ => false,
    }
}

// Runs inside one browsing context (the top page or one frame) and reports what it sees as
// booleans, plus two origins (scheme://host:port, never a path or query) for the host
// allowlist: no page text ever leaves the browser. It tags the elements the login loop
// acts on with data-browser-login="user|pass|submit" so WebDriver can find them by CSS.
//
// The selectors are TESTED against this crate's local login pages and are otherwise
// ASSUMPTIONS about Alibaba Cloud's account page (havana/passport ids such as fm-login-id,
// the "nc_" slider, "baxia" punish dialogs); see docs/auto-login.md.
const USER = [
  'input[name="loginId"]', 'input#fm-login-id', 'input[name="fm-login-id"]',
  'input[name="username"]', 'input[name="account"]', 'input[name="login_id"]',
  'input[name="email"]', 'input[type="email"]', 'input[autocomplete="username"]',
];
const PASS = [
  'input#fm-login-password', 'input[name="fm-login-password"]', 'input[type="password"]',
];
const SUBMIT = [
  'button[type="submit"]', 'input[type="submit"]', 'button.fm-submit', 'button.fm-button',
  'button[id*="login" i]', 'button[class*="login" i]', 'button[id*="submit" i]',
  'button[class*="submit" i]', '[role="button"][class*="login" i]', 'button',
];
const MFA = [
  'input[autocomplete="one-time-code"]', 'input[name*="verif" i]', 'input[id*="verif" i]',
  'input[name*="otp" i]', 'input[name*="mfa" i]', 'input[id*="mfa" i]', 'input[name*="smscode" i]',
  'input[name*="checkcode" i]', 'input[name*="authcode" i]', 'input[name*="securitycode" i]',
  'input[name="code"]',
];
const ERROR = [
  '.error', '.error-msg', '.errmsg', '.error-message', '.login-error', '.login-error-msg',
  '.fm-error', '.form-error', '.alert-error', '.next-message-error', '[role="alert"]',
  '#login-error', '[class*="error-tip" i]',
];
const CAPTCHA_RE = /(^|[\s_-])nc[_-]|nocaptcha|captcha|slider|btn_slide|slide-?to|baxia|punish/i;

const visible = (el) => {
  if (!el || el.type === 'hidden') return false;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') return false;
  return el.getClientRects().length > 0;
};
const pick = (root, selectors) => {
  for (const sel of selectors) {
    for (const el of root.querySelectorAll(sel)) {
      if (visible(el) && !el.disabled) return el;
    }
  }
  return null;
};

for (const el of document.querySelectorAll('[data-browser-login]')) {
  el.removeAttribute('data-browser-login');
}
const pass = pick(document, PASS);
let user = pick(document, USER);
if (!user && pass && pass.form) {
  // A form with a password field: its visible text-like input is the account field.
  user = Array.from(pass.form.querySelectorAll(
    'input[type="text"], input[type="email"], input[type="tel"], input:not([type])'
  )).find(visible) || null;
}
const formRoot = (pass && pass.form) || (user && user.form) || document;
const submit = (user || pass) ? (pick(formRoot, SUBMIT) || pick(document, SUBMIT.slice(0, -1))) : null;
if (user) user.setAttribute('data-browser-login', 'user');
if (pass) pass.setAttribute('data-browser-login', 'pass');
if (submit && submit !== user && submit !== pass) submit.setAttribute('data-browser-login', 'submit');

const captchaElement = Array.from(document.querySelectorAll('[id], [class]')).some((el) => {
  const cls = typeof el.className === 'string' ? el.className : '';
  return CAPTCHA_RE.test(`${el.id} ${cls}`) && visible(el);
});
const captchaFrame = Array.from(document.querySelectorAll('iframe[src]')).some(
  (el) => CAPTCHA_RE.test(el.getAttribute('src') || '') && visible(el)
);
const mfa = pick(document, MFA) !== null;
const error = Array.from(document.querySelectorAll(ERROR.join(','))).some(
  (el) => visible(el) && el.textContent.trim().length > 0
);
// Where the form's page lives and where it posts to (origins only: a path or query can
// carry tokens). An action that is not http(s) (e.g. a script-driven form) is not a target.
const httpOrigin = (href) => {
  try {
    const u = new URL(href, document.baseURI);
    return (u.protocol === 'http:' || u.protocol === 'https:') ? u.origin : null;
  } catch (e) {
    return null;
  }
};
const form = (pass && pass.form) || (user && user.form) || null;
return {
  origin: String(window.location.origin),
  actionOrigin: form && form.getAttribute('action') !== null ? httpOrigin(form.action) : null,
  user: user !== null,
  pass: pass !== null,
  submit: submit !== null && submit !== user && submit !== pass,
  captcha: captchaElement || captchaFrame,
  mfa,
  error,
  frames: document.querySelectorAll('iframe, frame').length,
};

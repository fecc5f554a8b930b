//! Client values quoted back in error messages, shortened: a 400 that repeats a megabyte
//! of the request would turn every bad request into an amplified echo (and fill logs).

use std::borrow::Cow;

/// Longest part of a client value an error message repeats, in characters.
pub const MAX_QUOTED_CHARS: usize = 64;

/// `value` as an error message may quote it: the first [`MAX_QUOTED_CHARS`] characters,
/// then `…` when something was cut.
pub fn quoted(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &value[..cut])),
        None => Cow::Borrowed(value),
    }
}

/// A message from a parser (serde_json's `invalid type: string "…"`, ``unknown variant
/// `…` ``) with every quoted run longer than [`MAX_QUOTED_CHARS`] shortened as
/// [`quoted`] does. Runs are delimited by `"` (with `\` escapes) or `` ` ``; an unclosed
/// run is shortened too.
pub fn shorten_quoted_runs(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut run = String::new();
        let mut closed = false;
        let mut escaped = false;
        for d in chars.by_ref() {
            if d == c && !escaped {
                closed = true;
                break;
            }
            escaped = c == '"' && d == '\\' && !escaped;
            run.push(d);
        }
        out.push_str(&quoted(&run));
        if closed {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_cut() {
        assert_eq!(quoted("gpt-4o"), "gpt-4o");
        let long = "é".repeat(1000);
        let shown = quoted(&long);
        assert_eq!(shown.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn parser_messages_keep_their_words_and_lose_the_bulk() {
        let value = "x".repeat(10_000);
        let msg =
            format!("invalid type: string \"{value}\", expected a sequence at line 1 column 10012");
        let short = shorten_quoted_runs(&msg);
        assert!(short.len() < 200, "{short}");
        assert!(short.starts_with("invalid type: string \"xxx"));
        assert!(short.ends_with("…\", expected a sequence at line 1 column 10012"));
        let variant = format!("unknown variant `{value}`, expected `user`");
        let short = shorten_quoted_runs(&variant);
        assert!(short.ends_with("…`, expected `user`"), "{short}");
        assert_eq!(
            shorten_quoted_runs(r#"string "a\"b", expected"#),
            r#"string "a\"b", expected"#
        );
        assert!(shorten_quoted_runs(&format!("cut \"{value}")).len() < 100);
    }
}

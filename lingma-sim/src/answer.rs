//! Deterministic answers that reveal what the simulator saw (turn number, the previous user
//! message, a digest of the history), so tests can assert that context was kept.

use sha2::{Digest, Sha256};

/// Longest quote of a user message inside an answer, in characters.
pub const QUOTE_CHARS: usize = 200;

/// Digest of an empty history (a new session).
pub fn empty_history_digest() -> String {
    hex::encode(Sha256::digest(b""))
}

/// The history digest after one more turn.
pub fn next_history_digest(previous: &str, question: &str, answer: &str) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(question.as_bytes());
    h.update(b"\n");
    h.update(answer.as_bytes());
    hex::encode(h.finalize())
}

/// `lingma-sim turn 2 of session 1a2b3c4d: you said "and then?"; previous: "hello"; history 9f8e7d6c`
/// (`previous: none` on turn 1).
pub fn answer_text(
    turn: u32,
    session_id: &str,
    question: &str,
    previous: Option<&str>,
    history_digest: &str,
) -> String {
    let mut out = String::with_capacity(96 + question.len().min(QUOTE_CHARS * 4) * 2);
    out.push_str("lingma-sim turn ");
    out.push_str(&turn.to_string());
    out.push_str(" of session ");
    out.push_str(prefix(session_id, 8));
    out.push_str(": you said \"");
    push_quote(&mut out, question);
    out.push_str("\"; previous: ");
    match previous {
        Some(p) => {
            out.push('"');
            push_quote(&mut out, p);
            out.push('"');
        }
        None => out.push_str("none"),
    }
    out.push_str("; history ");
    out.push_str(prefix(history_digest, 8));
    out
}

fn push_quote(out: &mut String, text: &str) {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => {
            out.push_str(&text[..cut]);
            out.push('…');
        }
        None => out.push_str(text),
    }
}

fn prefix(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

/// Split `text` into `n` consecutive pieces on character boundaries, as equal as possible
/// (fewer when the text has fewer characters; at least one).
pub fn split_chunks(text: &str, n: usize) -> Vec<&str> {
    let chars = text.chars().count();
    let n = n.clamp(1, chars.max(1));
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..=n {
        let end = bounds.get(chars * k / n).copied().unwrap_or(text.len());
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// `text` followed by filler words until it has at least `chars` characters (for very long
/// answers with `--answer-pieces`).
pub fn pad_to(mut text: String, chars: usize) -> String {
    const FILLER: &str = " lingma-sim filler";
    let have = text.chars().count();
    if have < chars {
        let need = chars - have;
        let words = need.div_ceil(FILLER.len());
        text.reserve(words * FILLER.len());
        for _ in 0..words {
            text.push_str(FILLER);
        }
    }
    text
}

/// A session title from the first question.
pub fn title_of(question: &str) -> String {
    let line = question.lines().next().unwrap_or("").trim();
    let title = prefix(line, 40);
    if title.is_empty() {
        "New chat".to_owned()
    } else {
        title.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_to_the_text() {
        for text in ["", "a", "héllo wörld, ça va?", "0123456789abcdef"] {
            for n in [1, 3, 8, 100] {
                let pieces = split_chunks(text, n);
                assert_eq!(pieces.concat(), text, "{text} / {n}");
                assert!(!pieces.is_empty());
                if text.chars().count() >= n {
                    assert_eq!(pieces.len(), n);
                    assert!(pieces.iter().all(|p| !p.is_empty()));
                }
            }
        }
    }

    #[test]
    fn padding_reaches_the_length() {
        assert_eq!(pad_to("abc".to_owned(), 0), "abc");
        assert_eq!(pad_to("abc".to_owned(), 2), "abc");
        let long = pad_to("abc".to_owned(), 5000);
        assert!(long.starts_with("abc lingma-sim filler"));
        assert!(long.chars().count() >= 5000 && long.len() < 5000 + 20);
        assert_eq!(split_chunks(&long, 5000).len(), 5000);
    }

    #[test]
    fn answer_reveals_turn_previous_and_history() {
        let a = answer_text(2, "1a2b3c4d-xxxx", "and then?", Some("hello"), "9f8e7d6c55");
        assert_eq!(
            a,
            "lingma-sim turn 2 of session 1a2b3c4d: you said \"and then?\"; previous: \"hello\"; history 9f8e7d6c"
        );
        let first = answer_text(1, "s", "hi", None, &empty_history_digest());
        assert!(
            first.ends_with("previous: none; history e3b0c442"),
            "{first}"
        );
        let long = "x".repeat(500);
        assert!(answer_text(1, "s", &long, None, "d").contains("…"));
    }
}

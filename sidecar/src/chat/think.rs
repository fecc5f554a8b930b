//! Inline thinking in `chat/answer` text (Qoder CN builds, lingma-protocol.md section 4
//! step 7): a line of four backticks plus `think::<time>` opens a block, a line of four
//! backticks closes it. The block becomes `reasoning_content`; the markers disappear.
//! Markers can be split across deltas, so a possible marker prefix is held back until the
//! next delta decides it.

const OPEN: &str = "````think::";
const CLOSE: &str = "\n````";
const FENCE: &str = "````";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Content(String),
    Reasoning(String),
}

#[derive(Debug, Default)]
pub struct ThinkSplitter {
    buf: String,
    in_think: bool,
    /// The text before `buf` ended a line (a closing fence may start `buf`).
    line_start: bool,
    /// Drop one newline right after a closing fence.
    skip_newline: bool,
}

impl ThinkSplitter {
    pub fn push(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.buf.push_str(text);
        loop {
            if self.skip_newline && !self.buf.is_empty() {
                if self.buf.starts_with('\n') {
                    self.buf.remove(0);
                }
                self.skip_newline = false;
            }
            let progressed = if self.in_think {
                self.step_think(out)
            } else {
                self.step_content(out)
            };
            if !progressed {
                return;
            }
        }
    }

    /// Whatever is left at the end of the answer.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        let rest = std::mem::take(&mut self.buf);
        if self.in_think {
            emit(out, Piece::Reasoning(rest));
        } else if !rest.starts_with(OPEN) {
            // An unfinished opening marker line at the very end is dropped.
            emit(out, Piece::Content(rest));
        }
    }

    /// Returns whether a marker was consumed (so the loop must run again).
    fn step_content(&mut self, out: &mut Vec<Piece>) -> bool {
        if let Some(pos) = self.buf.find(OPEN) {
            emit(out, Piece::Content(self.buf[..pos].to_owned()));
            let after = pos + OPEN.len();
            match self.buf[after..].find('\n') {
                Some(nl) => {
                    self.buf.drain(..after + nl + 1);
                    self.in_think = true;
                    self.line_start = true;
                    true
                }
                None => {
                    // The marker line is not complete yet.
                    self.buf.drain(..pos);
                    false
                }
            }
        } else {
            let keep = held_back(&self.buf, OPEN);
            let cut = self.buf.len() - keep;
            emit(out, Piece::Content(self.buf[..cut].to_owned()));
            self.buf.drain(..cut);
            false
        }
    }

    fn step_think(&mut self, out: &mut Vec<Piece>) -> bool {
        let close = if self.line_start && self.buf.starts_with(FENCE) {
            Some((0, FENCE.len()))
        } else {
            self.buf.find(CLOSE).map(|p| (p, p + CLOSE.len()))
        };
        if let Some((end, marker_end)) = close {
            emit(out, Piece::Reasoning(self.buf[..end].to_owned()));
            self.buf.drain(..marker_end);
            self.in_think = false;
            self.skip_newline = true;
            return true;
        }
        let mut keep = held_back(&self.buf, CLOSE);
        if self.line_start && self.buf.len() < FENCE.len() && self.buf.bytes().all(|b| b == b'`') {
            keep = keep.max(self.buf.len());
        }
        let cut = self.buf.len() - keep;
        if cut > 0 {
            self.line_start = self.buf[..cut].ends_with('\n');
            emit(out, Piece::Reasoning(self.buf[..cut].to_owned()));
            self.buf.drain(..cut);
        }
        false
    }
}

/// Length of the longest proper prefix of `marker` that `buf` ends with.
fn held_back(buf: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&k| buf.ends_with(&marker[..k]))
        .unwrap_or(0)
}

/// Append `piece` to `out`, merged with the last piece when of the same kind.
pub(super) fn emit(out: &mut Vec<Piece>, piece: Piece) {
    let empty = match &piece {
        Piece::Content(s) | Piece::Reasoning(s) => s.is_empty(),
    };
    if empty {
        return;
    }
    // Merge with the previous piece of the same kind: fewer, larger deltas.
    match (out.last_mut(), piece) {
        (Some(Piece::Content(prev)), Piece::Content(s)) => prev.push_str(&s),
        (Some(Piece::Reasoning(prev)), Piece::Reasoning(s)) => prev.push_str(&s),
        (_, piece) => out.push(piece),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        let mut content = String::new();
        let mut reasoning = String::new();
        for p in out {
            match p {
                Piece::Content(t) => content.push_str(&t),
                Piece::Reasoning(t) => reasoning.push_str(&t),
            }
        }
        (content, reasoning)
    }

    const WHOLE: &str = "\n````think::1.5\nlet me think\nabout it\n````\nThe answer is 42.";

    #[test]
    fn whole_block_is_split() {
        let (c, r) = split(&[WHOLE]);
        assert_eq!(r, "let me think\nabout it");
        assert_eq!(c, "\nThe answer is 42.");
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let expected = split(&[WHOLE]);
        for i in 0..=WHOLE.len() {
            if !WHOLE.is_char_boundary(i) {
                continue;
            }
            let got = split(&[&WHOLE[..i], &WHOLE[i..]]);
            assert_eq!(got, expected, "split at {i}");
        }
        let chars: Vec<String> = WHOLE.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(&refs), expected, "one char at a time");
    }

    #[test]
    fn plain_text_and_backticks_pass_through() {
        assert_eq!(
            split(&["hello ", "world"]),
            ("hello world".into(), String::new())
        );
        assert_eq!(
            split(&["code: ```rust\nfn x() {}\n```", "\n``"]),
            ("code: ```rust\nfn x() {}\n```\n``".into(), String::new())
        );
    }

    #[test]
    fn empty_think_block() {
        assert_eq!(
            split(&["````think::0\n````\nok"]),
            ("ok".into(), String::new())
        );
    }
}

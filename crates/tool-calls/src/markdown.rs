//! Just enough Markdown to know whether a character is prose or code: a `<tool_call>` marker
//! inside a code span or a fenced block is an example, not a call.
//!
//! Simplifications (documented in docs/tool-calling.md): only backtick fences (at the start of
//! a line, after optional spaces), an inline code span ends at the end of its line, and an
//! unclosed fence runs to the end of the answer.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Code {
    #[default]
    Prose,
    /// Inside a code span opened by this many backticks.
    Inline(usize),
    /// Inside a fenced block opened by this many backticks.
    Fence(usize),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Markdown {
    code: Code,
    /// Only spaces or tabs since the last newline.
    line_start: bool,
}

impl Default for Markdown {
    fn default() -> Self {
        Self {
            code: Code::Prose,
            line_start: true,
        }
    }
}

impl Markdown {
    /// Whether the next character is prose (not inside code).
    pub(crate) fn is_prose(&self) -> bool {
        self.code == Code::Prose
    }

    pub(crate) fn newline(&mut self) {
        self.line_start = true;
        if matches!(self.code, Code::Inline(_)) {
            self.code = Code::Prose;
        }
    }

    /// A character that is neither a newline, a space/tab nor a backtick.
    pub(crate) fn other(&mut self) {
        self.line_start = false;
    }

    /// A complete run of `run` backticks.
    pub(crate) fn backticks(&mut self, run: usize) {
        self.code = match self.code {
            Code::Prose if self.line_start && run >= 3 => Code::Fence(run),
            Code::Prose => Code::Inline(run),
            Code::Inline(n) if run == n => Code::Prose,
            Code::Fence(n) if self.line_start && run >= n => Code::Prose,
            other => other,
        };
        self.line_start = false;
    }

    /// Account for a complete piece of text (no hold-back needed).
    pub(crate) fn feed(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\n' => self.newline(),
                b' ' | b'\t' | b'\r' => {}
                b'`' => {
                    let run = bytes[i..].iter().take_while(|&&c| c == b'`').count();
                    self.backticks(run);
                    i += run;
                    continue;
                }
                _ => self.other(),
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(text: &str) -> bool {
        let mut md = Markdown::default();
        md.feed(text);
        md.is_prose()
    }

    #[test]
    fn spans_and_fences() {
        assert!(after("plain"));
        assert!(!after("see `code"));
        assert!(after("see `code` done"));
        assert!(after("see `code\nnext line"));
        assert!(!after("```rust\nfn x()"));
        assert!(!after("```rust\nfn x()\n"));
        assert!(after("```rust\nfn x()\n```\n"));
        assert!(
            !after("````\n```\n"),
            "a shorter run does not close a fence"
        );
        assert!(
            !after("text ```inline"),
            "mid-line triple backticks open a span"
        );
        assert!(
            after("``a`b``"),
            "a span closes only on a run of the same length"
        );
    }
}

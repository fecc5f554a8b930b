//! Sessions that remember their turns, persisted in `workDir/cache/sessions.json`.
//!
//! Writes are batched: a change marks the store dirty and a background task (or shutdown)
//! writes the whole file atomically, so thousands of chats per second cost no file I/O each.

use crate::answer::{empty_history_digest, next_history_digest, title_of};
use crate::persist::{now_ms, write_atomically};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Longest stored question, in bytes: enough for the 200-character quote of the previous
/// message; the digest covers the full text. Keeps the periodic file write small when a
/// benchmark sends long prompts.
const STORED_QUESTION_BYTES: usize = 1024;
/// Turns kept per session for `chat/getSessionById` (the turn count and digest cover all).
const STORED_TURNS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnRecord {
    pub request_id: String,
    pub question: String,
    pub answer: String,
    pub gmt_create: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub session_id: String,
    pub session_title: String,
    pub session_type: String,
    pub gmt_create: i64,
    pub gmt_modified: i64,
    /// Rolling digest of every (question, answer) so far.
    pub history_digest: String,
    /// Turns so far (`chatRecords` keeps only the latest ones).
    #[serde(default)]
    pub turn_count: u32,
    pub chat_records: Vec<TurnRecord>,
    /// Tool results the session's questions carried, over all turns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_results: u32,
    /// Tool results to wait for, from the latest `sim:tool_results=` directive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_results_wanted: Option<u32>,
    /// The latest tool contract a question carried, for later turns that carry none (a reused
    /// session gets only the new turn). Not persisted: it can be large.
    #[serde(skip)]
    pub tool_contract: Option<Arc<str>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a turn adds to the session's tool state.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolTurn<'a> {
    /// Tool results in this turn's question.
    pub results: u32,
    /// The contract text in this turn's question.
    pub contract: Option<&'a str>,
    /// A `sim:tool_results=` directive in this turn's question.
    pub wanted: Option<u32>,
}

/// What the simulator knows about a session when a turn starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnContext {
    pub turn: u32,
    pub previous_question: Option<String>,
    pub history_digest: String,
    /// Turn 1 of a (possibly reset) session: a title update is sent.
    pub is_new: bool,
    /// Tool results seen in earlier turns.
    pub tool_results: u32,
    pub tool_results_wanted: Option<u32>,
    pub tool_contract: Option<Arc<str>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileFormat {
    sessions: Vec<SessionRecord>,
}

#[derive(Debug)]
pub struct SessionStore {
    path: Option<PathBuf>,
    max_sessions: usize,
    sessions: Mutex<HashMap<String, SessionRecord>>,
    dirty: AtomicBool,
}

impl SessionStore {
    pub fn open(work_dir: Option<&std::path::Path>, max_sessions: usize) -> Self {
        let path = work_dir.map(|d| d.join("cache").join("sessions.json"));
        let mut sessions = HashMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => match serde_json::from_slice::<FileFormat>(&bytes) {
                    Ok(file) => {
                        for s in file.sessions {
                            sessions.insert(s.session_id.clone(), s);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "sessions file unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "sessions file unreadable; starting empty")
                }
            }
        }
        Self {
            path,
            max_sessions: max_sessions.max(1),
            sessions: Mutex::new(sessions),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The context of a turn about to start. `continue_session` is true for `isReply:true`
    /// (unless a fault makes the simulator forget); otherwise the session starts over.
    pub fn context(&self, session_id: &str, continue_session: bool) -> TurnContext {
        let sessions = self.sessions.lock();
        match sessions.get(session_id) {
            Some(s) if continue_session => TurnContext {
                turn: s.turn_count.saturating_add(1),
                previous_question: s.chat_records.last().map(|t| t.question.clone()),
                history_digest: s.history_digest.clone(),
                is_new: false,
                tool_results: s.tool_results,
                tool_results_wanted: s.tool_results_wanted,
                tool_contract: s.tool_contract.clone(),
            },
            _ => TurnContext {
                turn: 1,
                previous_question: None,
                history_digest: empty_history_digest(),
                is_new: true,
                tool_results: 0,
                tool_results_wanted: None,
                tool_contract: None,
            },
        }
    }

    /// Record a completed turn.
    pub fn record_turn(
        &self,
        session_id: &str,
        session_type: &str,
        ctx: &TurnContext,
        request_id: &str,
        question: &str,
        answer: &str,
    ) {
        let now = now_ms();
        let mut sessions = self.sessions.lock();
        if ctx.is_new {
            sessions.insert(
                session_id.to_owned(),
                SessionRecord {
                    session_id: session_id.to_owned(),
                    session_title: title_of(question),
                    session_type: session_type.to_owned(),
                    gmt_create: now,
                    gmt_modified: now,
                    history_digest: empty_history_digest(),
                    turn_count: 0,
                    chat_records: Vec::new(),
                    tool_results: 0,
                    tool_results_wanted: None,
                    tool_contract: None,
                },
            );
        }
        if let Some(s) = sessions.get_mut(session_id) {
            s.history_digest = next_history_digest(&s.history_digest, question, answer);
            s.gmt_modified = now;
            s.turn_count = s.turn_count.saturating_add(1);
            if s.chat_records.len() >= STORED_TURNS {
                s.chat_records.remove(0);
            }
            s.chat_records.push(TurnRecord {
                request_id: request_id.to_owned(),
                question: truncate(question, STORED_QUESTION_BYTES).to_owned(),
                answer: answer.to_owned(),
                gmt_create: now,
            });
        }
        if sessions.len() > self.max_sessions + self.max_sessions / 10 {
            evict_oldest(&mut sessions, self.max_sessions);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Add a completed turn's tool state (after [`SessionStore::record_turn`]).
    pub fn record_tools(&self, session_id: &str, turn: &ToolTurn<'_>) {
        if *turn == ToolTurn::default() {
            return;
        }
        let mut sessions = self.sessions.lock();
        if let Some(s) = sessions.get_mut(session_id) {
            s.tool_results = s.tool_results.saturating_add(turn.results);
            if turn.wanted.is_some() {
                s.tool_results_wanted = turn.wanted;
            }
            if let Some(contract) = turn.contract {
                s.tool_contract = Some(Arc::from(contract));
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Summaries, most recently modified first (`chat/listAllSessions`).
    pub fn list(&self) -> Vec<SessionRecord> {
        let sessions = self.sessions.lock();
        let mut all: Vec<SessionRecord> = sessions
            .values()
            .map(|s| SessionRecord {
                chat_records: Vec::new(),
                ..s.clone()
            })
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.gmt_modified));
        all
    }

    pub fn get(&self, session_id: &str) -> Option<SessionRecord> {
        self.sessions.lock().get(session_id).cloned()
    }

    pub fn delete(&self, session_id: &str) -> bool {
        let removed = self.sessions.lock().remove(session_id).is_some();
        if removed {
            self.dirty.store(true, Ordering::Release);
        }
        removed
    }

    pub fn clear(&self) {
        self.sessions.lock().clear();
        self.dirty.store(true, Ordering::Release);
    }

    /// Write the file if anything changed since the last write.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let bytes = {
            let sessions = self.sessions.lock();
            let file = FileFormatRef {
                sessions: sessions.values().collect(),
            };
            serde_json::to_vec(&file).map_err(std::io::Error::other)?
        };
        write_atomically(path, &bytes).inspect_err(|_| {
            self.dirty.store(true, Ordering::Release);
        })
    }
}

#[derive(Serialize)]
struct FileFormatRef<'a> {
    sessions: Vec<&'a SessionRecord>,
}

fn evict_oldest(sessions: &mut HashMap<String, SessionRecord>, keep: usize) {
    let mut by_age: Vec<(i64, String)> = sessions
        .values()
        .map(|s| (s.gmt_modified, s.session_id.clone()))
        .collect();
    by_age.sort_unstable();
    let excess = sessions.len().saturating_sub(keep);
    for (_, id) in by_age.into_iter().take(excess) {
        sessions.remove(&id);
    }
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_accumulate_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::open(Some(dir.path()), 10);
        let c1 = store.context("s1", true);
        assert_eq!((c1.turn, c1.is_new), (1, true));
        store.record_turn("s1", "chat", &c1, "r1", "hello", "a1");
        let c2 = store.context("s1", true);
        assert_eq!(c2.turn, 2);
        assert_eq!(c2.previous_question.as_deref(), Some("hello"));
        assert_ne!(c2.history_digest, c1.history_digest);
        // isReply:false starts over.
        assert_eq!(store.context("s1", false).turn, 1);
        store.flush().expect("flush");

        let reopened = SessionStore::open(Some(dir.path()), 10);
        assert_eq!(reopened.context("s1", true), c2);
        assert!(reopened.delete("s1"));
        assert!(reopened.get("s1").is_none());
    }

    #[test]
    fn tool_state_accumulates_over_turns() {
        let store = SessionStore::open(None, 10);
        let c1 = store.context("s", true);
        store.record_turn("s", "chat", &c1, "r1", "q", "a");
        let turn = ToolTurn {
            results: 2,
            contract: Some("# Tools"),
            wanted: Some(3),
        };
        store.record_tools("s", &turn);
        let c2 = store.context("s", true);
        store.record_turn("s", "chat", &c2, "r2", "q", "a");
        store.record_tools(
            "s",
            &ToolTurn {
                results: 1,
                ..ToolTurn::default()
            },
        );
        let c3 = store.context("s", true);
        assert_eq!(c3.tool_results, 3);
        assert_eq!(c3.tool_results_wanted, Some(3));
        assert_eq!(c3.tool_contract.as_deref(), Some("# Tools"));
        assert_eq!(store.context("s", false).tool_results, 0);
    }

    #[test]
    fn oldest_sessions_are_evicted_beyond_the_cap() {
        let store = SessionStore::open(None, 10);
        for i in 0..30 {
            let id = format!("s{i}");
            let ctx = store.context(&id, true);
            store.record_turn(&id, "chat", &ctx, "r", "q", "a");
        }
        assert!(store.len() <= 11, "{}", store.len());
    }
}

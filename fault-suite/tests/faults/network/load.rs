//! The network test's background load: clients sending chats back to back for the whole
//! test, and what each request ended with.

use fault_suite::{API_KEY, Stack, user};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use test_support::openai;

/// Clients sending chats back to back for the whole test.
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    workers: tokio::task::JoinSet<Tally>,
}

/// What the background chats ended with.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) answered: usize,
    /// (started, ended, status) of each error answer.
    pub(super) failed: Vec<(Instant, Instant, u16)>,
    /// Transport errors and client timeouts: requests the gateway never answered.
    unanswered: Vec<String>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses: Vec<u16> = self.failed.iter().map(|(_, _, s)| *s).collect();
        write!(
            f,
            "{} answered, {} failed (statuses {statuses:?}), {} unanswered",
            self.answered,
            self.failed.len(),
            self.unanswered.len()
        )
    }
}

impl Tally {
    /// Every request answered; errors only from requests in flight between `from` and `to`.
    pub(super) fn assert_answered(&self, from: Instant, to: Instant) {
        assert!(
            self.unanswered.is_empty(),
            "unanswered requests: {:?}",
            self.unanswered
        );
        assert!(self.answered > 0, "the background load got no answer");
        for (started, ended, status) in &self.failed {
            assert!(
                *ended >= from && *started <= to,
                "status {status} outside the partition window"
            );
        }
    }
}

impl Load {
    pub(super) fn start(stack: &Arc<Stack>, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (stack, stop) = (stack.clone(), stop.clone());
            set.spawn(async move {
                let mut tally = Tally::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let body = user(&format!("background {w}.{n}"));
                    match openai::post_chat(
                        &stack.http,
                        &stack.gateway.chat_url(),
                        Some(API_KEY),
                        &body,
                    )
                    .await
                    {
                        Ok(out) if out.status == 200 => tally.answered += 1,
                        Ok(out) => {
                            fault_suite::assert_result_or_error(&out, "background chat");
                            tally.failed.push((started, Instant::now(), out.status));
                        }
                        Err(e) => tally.unanswered.push(format!("{e:#}")),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tally
            });
        }
        Self { stop, workers: set }
    }

    pub(super) async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        while let Some(t) = self.workers.join_next().await {
            let t = t.expect("a load worker panicked");
            all.answered += t.answered;
            all.failed.extend(t.failed);
            all.unanswered.extend(t.unanswered);
        }
        all
    }
}

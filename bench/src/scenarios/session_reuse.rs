//! Bytes sent upstream for turn N of one conversation, with and without upstream session
//! reuse. With reuse only the new user message goes to Lingma (O(1) per turn); without it the
//! whole flattened history does (O(N)). Measured at the simulator (`question_bytes_total`).

use super::Ctx;
use bench::openai::{self, chat_body};
use bench::report::Goal;
use bench::stack::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim, SimOptions};

/// Growth allowed from turn 2 to the last turn with reuse for it to count as O(1).
const O1_RATIO_GOAL: f64 = 1.5;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let turns = ctx.settings.reuse_turns;
    let scenario = format!("session reuse ({turns} turns)");
    let mut last_turn = [0u64; 2];
    for (slot, reuse) in [(0, true), (1, false)] {
        let sim = Sim::start(&ctx.bins.sim, SimOptions::default()).await?;
        let sidecar = Sidecar::start(
            &ctx.bins.sidecar,
            &sim,
            SidecarOptions {
                session_reuse: reuse,
                ..SidecarOptions::default()
            },
        )
        .await?;
        let gateway = Gateway::start(
            &ctx.bins.gateway,
            GatewayOptions {
                session_reuse: reuse,
                ..GatewayOptions::for_sidecars(&[&sidecar])
            },
        )
        .await?;
        let http = reqwest::Client::new();
        let mut history: Vec<(String, String)> =
            vec![("system".into(), "You are a concise assistant.".into())];
        let mut per_turn = Vec::new();
        let mut reused = 0;
        for t in 1..=turns {
            history.push((
                "user".into(),
                format!("turn {t:03}: please explain the next step of the refactoring plan."),
            ));
            let msgs: Vec<(&str, &str)> = history
                .iter()
                .map(|(r, c)| (r.as_str(), c.as_str()))
                .collect();
            let before = question_bytes(&sim).await;
            let out = openai::post_chat(
                &http,
                &gateway.chat_url(),
                None,
                &chat_body(&msgs, false, None),
            )
            .await?;
            anyhow::ensure!(
                out.status == 200,
                "turn {t}: HTTP {} {}",
                out.status,
                out.body
            );
            if out.session.as_deref() == Some("reused") {
                reused += 1;
            }
            per_turn.push(question_bytes(&sim).await.saturating_sub(before));
            history.push((
                "assistant".into(),
                out.content().unwrap_or_default().to_owned(),
            ));
        }
        let label = if reuse { "with reuse" } else { "without reuse" };
        let r = &mut ctx.report;
        r.info(
            &scenario,
            &format!("{label}: bytes upstream, turn 2"),
            per_turn.get(1).map(|&b| b as f64),
            "B",
        );
        r.info(
            &scenario,
            &format!("{label}: bytes upstream, turn {turns}"),
            per_turn.last().map(|&b| b as f64),
            "B",
        );
        r.info(
            &scenario,
            &format!("{label}: turns answered as reused"),
            Some(reused as f64),
            "turns",
        );
        if reuse {
            let ratio = match (per_turn.get(1), per_turn.last()) {
                (Some(&a), Some(&b)) if a > 0 => Some(b as f64 / a as f64),
                _ => None,
            };
            r.add(
                &scenario,
                &format!("with reuse: bytes turn {turns} / turn 2"),
                ratio,
                "x",
                Some(Goal::AtMost(O1_RATIO_GOAL)),
                "O(1)",
            );
        }
        last_turn[slot] = per_turn.last().copied().unwrap_or(0);
    }
    let saving = (last_turn[0] > 0).then(|| last_turn[1] as f64 / last_turn[0] as f64);
    ctx.report.info(
        &scenario,
        &format!("turn {turns}: bytes without / with reuse"),
        saving,
        "x",
    );
    Ok(())
}

async fn question_bytes(sim: &Sim) -> u64 {
    sim.control()
        .stats()
        .await
        .ok()
        .and_then(|s| s["question_bytes_total"].as_u64())
        .unwrap_or(0)
}

//! What a chat answers: the plain answer of `answer`, or, when the question (or an earlier turn
//! of the session) carries the gateway's tool contract, an answer in the contract's syntax.

use crate::answer::{answer_text, pad_to};
use crate::config::SimConfig;
use crate::fault::Fault;
use crate::sessions::{ToolTurn, TurnContext};
use crate::tools;
use tool_calls::detect::{contract_in, contract_text, count_tool_results};

/// The answer, and what this turn adds to the session's tool state: an answer in the tool
/// contract's syntax when the question (or, for a reused session, an earlier turn) carries
/// the contract, otherwise the plain answer (padded by `--answer-pieces`).
pub(crate) fn compose_answer<'q>(
    config: &SimConfig,
    fault: Fault,
    question: &'q str,
    session_id: &str,
    ctx: &TurnContext,
) -> (String, ToolTurn<'q>) {
    let directives = tools::directives_in(question);
    let turn = ToolTurn {
        results: u32::try_from(count_tool_results(question)).unwrap_or(u32::MAX),
        contract: contract_text(question),
        wanted: directives.results,
    };
    let contract = turn
        .contract
        .or(ctx.tool_contract.as_deref())
        .and_then(contract_in);
    let plain = |quote: fn(&str) -> String| {
        answer_text(
            ctx.turn,
            session_id,
            &quote(question),
            ctx.previous_question.as_deref().map(quote).as_deref(),
            &ctx.history_digest,
        )
    };
    if let Some(contract) = contract {
        let style = directives
            .style
            .or(fault.tool_style())
            .unwrap_or(config.tool_style);
        let wanted = directives
            .results
            .or(ctx.tool_results_wanted)
            .unwrap_or(config.tool_results);
        let seen = ctx.tool_results.saturating_add(turn.results);
        // Quoting the contract or earlier calls back would be read as calls.
        let plain = plain(tools::quotable);
        return match tools::answer(&contract, style, seen, wanted, &plain) {
            Some(answer) => (answer, turn),
            None => (pad_to(plain, config.answer_pieces), turn),
        };
    }
    (pad_to(plain(str::to_owned), config.answer_pieces), turn)
}

//! Client behaviour the simulator cannot produce on demand (exact frame splitting, unknown
//! requestIds, garbage frames, tool calls): the other end here is a SCRIPTED PEER, a
//! WebSocket server on 127.0.0.1 inside the test that plays Lingma's side frame by frame.
//! Everything else is tested against the real simulator in `tests/against_sim/`.

mod failures;
mod peer;
mod routing;

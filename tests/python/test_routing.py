"""Sticky routing, upstream session reuse, two gateway replicas, and failover."""

import uuid

import openai
import pytest

from stack import API_KEY, start_stack, wait_until


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("routing"), sidecars=3)
    s.start_gateway()  # a second replica over the same sidecars
    yield s
    s.stop()


def client_for(gw):
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


def ask(client, messages, **kw):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages, **kw)
    return raw.parse(), raw.headers


def asks_seen(sim, marker):
    return [a for a in sim.stats()["recent_asks"] if marker in (a.get("questionText") or "")]


def test_multi_turn_conversation_reuses_the_upstream_session(three):
    client = client_for(three.gateways[0])
    marker = uuid.uuid4().hex
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"first {marker}"}]
    r1, h1 = ask(client, history)
    assert h1["x-lingma-session"] == "new"
    sidecar = h1["x-lingma-sidecar"]
    for turn in range(2, 5):
        history += [{"role": "assistant", "content": r1.choices[0].message.content},
                    {"role": "user", "content": f"turn {turn} {marker}"}]
        r1, h = ask(client, history)
        assert h["x-lingma-session"] == "reused", f"turn {turn}"
        assert h["x-lingma-sidecar"] == sidecar, "every turn on the sidecar holding the session"
        assert f"turn {turn} of session" in r1.choices[0].message.content

    # What reached "Lingma": every turn on one simulator, follow-ups as replies in the
    # same session carrying only the new message.
    sim = next(s.sim for s in three.sidecars if s.name == sidecar)
    asks = asks_seen(sim, marker)
    assert len(asks) == 4
    assert [a["isReply"] for a in asks] == [False, True, True, True]
    assert len({a["sessionId"] for a in asks}) == 1
    assert asks[-1]["questionText"].strip() == f"turn 4 {marker}"
    for other in three.sidecars:
        if other.name != sidecar:
            assert asks_seen(other.sim, marker) == []


def test_two_gateways_choose_the_same_sidecar(three):
    a, b = (client_for(g) for g in three.gateways[:2])
    chosen = set()
    for i in range(12):
        convo = [{"role": "user", "content": f"conversation {i} {uuid.uuid4().hex}"}]
        _, ha = ask(a, convo)
        _, hb = ask(b, convo)
        assert ha["x-lingma-sidecar"] == hb["x-lingma-sidecar"], f"conversation {i}"
        chosen.add(ha["x-lingma-sidecar"])
    assert len(chosen) >= 2, "different conversations spread over the pool"


def test_user_field_keeps_a_user_on_one_sidecar(three):
    client = client_for(three.gateways[0])
    user = f"user-{uuid.uuid4().hex[:8]}"
    seen = {ask(client, [{"role": "user", "content": f"q{i} {uuid.uuid4()}"}], user=user)[1]["x-lingma-sidecar"]
            for i in range(6)}
    assert len(seen) == 1


@pytest.fixture
def failover_stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("failover"), sidecars=3,
                    gateway_env={"GATEWAY_EJECT_FAILURES": "1", "GATEWAY_EJECT_COOLDOWN_SEC": "30"})
    yield s
    s.stop()


def test_killing_a_sidecar_moves_traffic_and_migrates_its_conversations(failover_stack):
    stack = failover_stack
    gw = stack.gateways[0]
    client = client_for(gw)
    marker = uuid.uuid4().hex
    history = [{"role": "user", "content": f"hello {marker}"}]
    r, h = ask(client, history)
    victim = next(s for s in stack.sidecars if s.name == h["x-lingma-sidecar"])
    victim.process.kill()
    wait_until(lambda: next(p for p in gw.get("/internal/stats").json()["pool"]
                            if p["name"] == victim.name)["state"] != "usable",
               what="gateway notices the dead sidecar")

    history += [{"role": "assistant", "content": r.choices[0].message.content},
                {"role": "user", "content": f"still there? {marker}"}]
    r2, h2 = ask(client, history)
    assert h2["x-lingma-session"] == "migrated"
    assert h2["x-lingma-sidecar"] != victim.name
    # A fresh upstream session that got the whole history.
    assert "turn 1 of session" in r2.choices[0].message.content

    for i in range(10):
        _, h = ask(client, [{"role": "user", "content": f"new {i} {uuid.uuid4()}"}])
        assert h["x-lingma-sidecar"] != victim.name
    assert gw.get("/readyz", auth=False).status_code == 200

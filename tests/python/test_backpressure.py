"""Admission limits: over-limit load gets 429 + Retry-After while admitted requests finish;
a client that goes away mid-stream frees its slot and the upstream chat."""

import concurrent.futures
import time
import uuid

import httpx
import openai
import pytest

from stack import API_KEY, start_stack, wait_until

LIMIT = 2


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    # Each chat takes about 1.5 s upstream (5 chunks, 300 ms apart).
    s = start_stack(
        tmp_path_factory.mktemp("backpressure"), sidecars=1,
        sim_args=["--chunks", "5", "--chunk-delay-ms", "300", "--max-concurrent-chats", "8"],
        sidecar_env={"LINGMA_MAX_CONCURRENT_CHATS": "8"},
        gateway_env={"GATEWAY_MAX_IN_FLIGHT": str(LIMIT), "GATEWAY_QUEUE_TIMEOUT_SEC": "0.4"},
    )
    yield s
    s.stop()


def test_over_limit_load_gets_429_while_admitted_requests_complete(slow):
    gw = slow.gateways[0]
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)

    def one(i):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"load {i} {uuid.uuid4()}"}])
            return 200, raw.parse().choices[0].finish_reason, None
        except openai.RateLimitError as e:
            return 429, e.body, e.response.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(6)))
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) == LIMIT, results
    assert all(r[1] == "stop" for r in ok)
    assert len(limited) == 6 - LIMIT, results
    for _, body, retry_after in limited:
        assert retry_after is not None and int(retry_after) >= 1
        assert body["code"] == "queue_timeout"
    text = gw.get("/metrics").text
    assert 'gateway_rejected_total{reason="queue_timeout"}' in text
    wait_until(lambda: gw.metric("gateway_in_flight") == 0, timeout=5, what="slots freed")


def test_client_disconnect_mid_stream_frees_the_slot(slow):
    gw = slow.gateways[0]
    sim = slow.sidecars[0].sim
    # This one chat is slow (3 s to the first token, then 5 chunks 300 ms apart): if it
    # ends within 1 s of the disconnect, it was cancelled, not finished.
    assert sim.control("POST", "/control/fault", {"fault": "slow", "times": 1}).status_code < 300
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": f"bye {uuid.uuid4()}"}]}
    with httpx.stream("POST", gw.base_url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"role":"assistant"' in first
        assert gw.metric("gateway_in_flight") == 1
        assert sim.stats()["chats_in_flight"] == 1
        # Leave mid-stream: closing the response drops the connection.
    started = time.monotonic()
    wait_until(lambda: gw.metric("gateway_in_flight") == 0, timeout=5, what="gateway slot freed")
    # The chat was cancelled upstream, well before it would have finished by itself.
    wait_until(lambda: sim.stats()["chats_in_flight"] == 0, timeout=5, what="upstream chat cancelled")
    assert time.monotonic() - started < 1.0
    # The freed slot is usable at once.
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}])
    assert r.choices[0].finish_reason == "stop"


def test_anthropic_disconnect_mid_stream_frees_the_slot(slow):
    gw = slow.gateways[0]
    sim = slow.sidecars[0].sim
    assert sim.control("POST", "/control/fault", {"fault": "slow", "times": 1}).status_code < 300
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": f"bye claude {uuid.uuid4()}"}]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body,
                      headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}, timeout=10) as r:
        assert r.status_code == 200
        # Keep the line iterator alive: dropping it closes the connection early.
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"message_start"' in first
        assert gw.metric("gateway_in_flight") == 1
        assert sim.stats()["chats_in_flight"] == 1
    started = time.monotonic()
    wait_until(lambda: gw.metric("gateway_in_flight") == 0, timeout=5, what="gateway slot freed")
    wait_until(lambda: sim.stats()["chats_in_flight"] == 0, timeout=5, what="upstream chat cancelled")
    assert time.monotonic() - started < 1.0


def test_anthropic_over_limit_is_429_with_retry_after(slow):
    import anthropic
    gw = slow.gateways[0]
    claude = anthropic.Anthropic(base_url=gw.base_url, api_key=API_KEY, max_retries=0, timeout=30)

    def one(i):
        try:
            claude.messages.create(model="claude-x", max_tokens=10,
                                   messages=[{"role": "user", "content": f"load {i} {uuid.uuid4()}"}])
            return 200, None, None
        except anthropic.RateLimitError as e:
            return 429, e.body, e.response.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(one, range(5)))
    limited = [r for r in results if r[0] == 429]
    assert len([r for r in results if r[0] == 200]) == LIMIT, results
    assert limited, results
    for _, body, retry_after in limited:
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert retry_after is not None and int(retry_after) >= 1
    wait_until(lambda: gw.metric("gateway_in_flight") == 0, timeout=5, what="slots freed")

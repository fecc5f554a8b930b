"""The Responses API across gateway replicas, as the official `openai` package drives it:
with GATEWAY_RESPONSES_REDIS_URL the replicas share a real Redis (`redis-server`, Debian's
package), so an agent loop chained by `previous_response_id` may hit any replica at every
step and still continue its conversation (and its upstream session)."""

import shutil
import uuid

import openai
import pytest

from agents import RESPONSES_TOOLS, answer_tool_calls
from stack import API_KEY, Process, _port_open, free_port, start_stack, wait_until
from test_agent_loops import assert_loop_upstream

REDIS_PASSWORD = "redis-pw-3c9d1a"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    log_dir = tmp_path_factory.mktemp("replicas")
    port = free_port()
    redis = Process("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--requirepass", REDIS_PASSWORD], {}, log_dir)
    wait_until(lambda: _port_open(port), what="redis-server listening")
    env = {"GATEWAY_RESPONSES_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}"}
    stack = start_stack(log_dir, sidecars=2, gateway_env=env)
    stack.start_gateway(env)
    yield stack
    stack.stop()
    redis.stop()


def clients(stack):
    return [openai.OpenAI(base_url=gw.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
            for gw in stack.gateways]


def test_an_agent_loop_alternating_replicas_continues_by_previous_response_id(replicas):
    a, b = clients(replicas)
    marker = uuid.uuid4().hex
    # Streamed first step: the response is stored before `response.completed` goes out, so
    # the next step, sent the moment the stream ends, finds it on the other replica.
    with a.responses.stream(model="gpt-5-codex", tools=RESPONSES_TOOLS,
                            input=f"plan the work {marker} sim:tool_results=2") as stream:
        r = stream.get_final_response()
    r, sessions = answer_tool_calls(r, [b, a])
    assert sessions == ["reused", "reused"]
    assert "saw 2 tool result(s)" in r.output_text
    assert_loop_upstream(replicas, marker, 3)
    # Either replica returns the stored body.
    assert b.responses.retrieve(r.id).output_text == r.output_text
    assert a.responses.retrieve(r.id).id == r.id


def test_the_redis_password_reaches_no_log(replicas):
    for gw in replicas.gateways:
        log = gw.process.output()
        assert '"store":"redis"' in log
        assert REDIS_PASSWORD not in log

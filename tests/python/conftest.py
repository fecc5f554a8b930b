import sys
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stack import API_KEY, Stack, start_stack  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    """Two simulators, two sidecars, one gateway (auth on, no global limit)."""
    s = start_stack(tmp_path_factory.mktemp("stack"), sidecars=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gateway(stack):
    return stack.gateways[0]


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    # No SDK retries: the tests must see the gateway's first answer.
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def multi_key_gateway(stack):
    """A second gateway over the same sidecars with two API keys."""
    key_a, key_b = "sk-tenant-a-1111", "sk-tenant-b-2222"
    gw = stack.start_gateway({"API_KEYS": f"{API_KEY},{key_a},{key_b}"})
    return gw, key_a, key_b

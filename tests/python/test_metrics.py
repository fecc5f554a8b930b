"""Prometheus exposition of the gateway and the sidecar passes `promtool check metrics`."""

import os
import shutil
import subprocess

import httpx
import openai
import pytest

from stack import API_KEY, METRICS_TOKEN


def promtool():
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package `prometheus`); CI must install it")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return path


def check(text: str) -> None:
    r = subprocess.run([promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert out.strip() == "", f"promtool warnings:\n{out}"


def test_gateway_metrics_pass_promtool(gateway, client):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "metrics"}])
    text = gateway.get("/metrics").text
    for name in ("gateway_in_flight", "gateway_queued", "gateway_accepted_total", "gateway_max_in_flight",
                 "gateway_pool_instance_in_flight{", "gateway_pool_instance_ready{",
                 "gateway_request_duration_seconds_bucket", "gateway_time_to_first_token_seconds_bucket",
                 "gateway_overhead_seconds_bucket"):
        assert name in text, name
    check(text)


def test_sidecar_metrics_pass_promtool(stack):
    text = httpx.get(f"http://127.0.0.1:{stack.sidecars[0].port}/metrics", timeout=5).text
    assert text.strip()
    check(text)


def test_metrics_need_the_metrics_token_not_a_client_key(gateway):
    assert gateway.get("/metrics", auth=False).status_code == 401
    r = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    # A client key is recognised and refused: admin routes are not for clients.
    for path in ("/metrics", "/internal/stats", "/internal/auto-login/status"):
        r = httpx.get(gateway.base_url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_permissions", path
    r = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
    assert r.status_code == 200

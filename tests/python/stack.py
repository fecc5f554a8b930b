"""Start real binaries for the tests: lingma-sim (a test double of Lingma), sidecars
attached to them, and gateways, each on free 127.0.0.1 ports, and stop them after.

The binaries come from $CARGO_TARGET_DIR/debug (built beforehand with
`cargo build --bins`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

API_KEY = "sk-test-gateway-key-7c1d"
SIDECAR_TOKEN = "sidecar-token-for-tests-91ab"
# The gateway's admin routes (/metrics, /internal/*) take this, never a client key.
METRICS_TOKEN = "metrics-token-for-tests-5e02"
CONTROL_TOKEN = "sim-control-token-for-tests"
WAIT = 20.0

REPO = Path(__file__).resolve().parents[2]

# Settings a developer may have exported; children must see only what a test sets.
_PROJECT_PREFIXES = (
    "LINGMA_", "GATEWAY_", "SIDECAR_", "SESSION_", "AUTO_LOGIN_", "API_KEYS",
    "METRICS_TOKEN", "ADMIN_TOKEN", "DEFAULT_", "DEDICATED_", "LOG_", "OTEL_",
)


def bin_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return Path(target) / "debug"


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing: build the binaries first with `cargo build --bins`"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.02)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not (k in ("HOST", "PORT") or k.startswith(_PROJECT_PREFIXES))
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A child process with its output in a log file; stopped by `stop()`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, env=clean_env(env), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Sim:
    process: Process
    ws_port: int
    http_port: int
    work_dir: Path

    def control(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(
            method, f"http://127.0.0.1:{self.http_port}{path}", json=body,
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}"}, timeout=5,
        )

    def stats(self) -> dict:
        r = self.control("GET", "/control/stats")
        r.raise_for_status()
        return r.json()


@dataclass
class SidecarProc:
    name: str
    process: Process
    port: int
    sim: Sim

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class Gateway:
    process: Process
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, auth: bool = True) -> httpx.Response:
        """GET with the credential the route wants: the metrics token on admin routes."""
        admin = path.startswith(("/metrics", "/internal/"))
        headers = {"Authorization": f"Bearer {METRICS_TOKEN if admin else API_KEY}"} if auth else {}
        return httpx.get(self.base_url + path, headers=headers, timeout=10)

    def metric(self, name: str) -> float:
        """Value of an unlabelled sample in /metrics."""
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


@dataclass
class Stack:
    log_dir: Path
    sims: list[Sim] = field(default_factory=list)
    sidecars: list[SidecarProc] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)

    def start_sidecar(self, name: str, sim_args: list[str], sidecar_env: dict[str, str]) -> SidecarProc:
        ws_port, http_port = free_port(), free_port()
        work_dir = Path(tempfile.mkdtemp(prefix=f"{name}-sim-", dir=self.log_dir))
        args = [
            str(binary("lingma-sim")), "start", "--workDir", str(work_dir),
            "--socketPort", str(ws_port), "--httpPort", str(http_port),
            "--logged-in", "--control-token", CONTROL_TOKEN, *sim_args,
        ]
        sim = Sim(Process(f"{name}-sim", args, {"LINGMA_SIM_LOG_LEVEL": "warn"}, self.log_dir),
                  ws_port, http_port, work_dir)
        self.sims.append(sim)
        wait_until(lambda: _port_open(ws_port), what=f"{name} sim listening")
        port = free_port()
        env = {
            "SIDECAR_HOST": "127.0.0.1", "SIDECAR_PORT": port, "SIDECAR_NAME": name,
            "SIDECAR_TOKEN": SIDECAR_TOKEN, "LINGMA_ATTACH": "true",
            "LINGMA_SOCKET_PORT": ws_port, "LINGMA_HTTP_PORT": http_port,
            "LINGMA_WORK_DIR": str(work_dir), "LOG_LEVEL": "info",
            "LINGMA_MAX_CONCURRENT_CHATS": "4", "SIDECAR_DRAIN_TIMEOUT_SEC": "2",
            **sidecar_env,
        }
        sidecar = SidecarProc(name, Process(name, [str(binary("sidecar"))], env, self.log_dir), port, sim)
        self.sidecars.append(sidecar)
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
            what=f"{name} ready",
        )
        return sidecar

    def start_gateway(self, env: dict[str, str] | None = None) -> Gateway:
        port = free_port()
        full_env = {
            "HOST": "127.0.0.1", "PORT": port, "API_KEYS": API_KEY, "METRICS_TOKEN": METRICS_TOKEN,
            "SIDECAR_TOKEN": SIDECAR_TOKEN, "LOG_LEVEL": "info", "LOG_FORMAT": "json",
            "GATEWAY_MAX_IN_FLIGHT": "0", "GATEWAY_QUEUE_TIMEOUT_SEC": "10",
            "GATEWAY_SIDECARS": ",".join(f"{s.name}={s.url}" for s in self.sidecars),
            **(env or {}),
        }
        gw = Gateway(Process(f"gateway-{len(self.gateways)}", [str(binary("gateway"))], full_env, self.log_dir), port)
        self.gateways.append(gw)
        expected = len(self.sidecars)
        wait_until(
            lambda: _usable_sidecars(gw) == expected,
            what=f"gateway sees {expected} usable sidecars",
        )
        return gw

    def stop(self) -> None:
        for p in [g.process for g in self.gateways] + [s.process for s in self.sidecars] + [s.process for s in self.sims]:
            p.stop()

    def dump_logs(self) -> str:
        parts = []
        for p in [g.process for g in self.gateways] + [s.process for s in self.sidecars]:
            parts.append(f"---- {p.name} ----\n{p.output()[-4000:]}")
        return "\n".join(parts)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _usable_sidecars(gw: Gateway) -> int:
    stats = gw.get("/internal/stats").json()
    return sum(1 for s in stats["pool"] if s["state"] == "usable")


def start_stack(log_dir: Path, sidecars: int, sim_args: list[str] | None = None,
                sidecar_env: dict[str, str] | None = None,
                gateway_env: dict[str, str] | None = None) -> Stack:
    stack = Stack(log_dir)
    try:
        for i in range(sidecars):
            stack.start_sidecar(f"sidecar-{i}", sim_args or ["--chunks", "4"], sidecar_env or {})
        stack.start_gateway(gateway_env)
    except Exception:
        print(stack.dump_logs())
        stack.stop()
        raise
    return stack

"""What a client may cost `flopex serve` before it is authenticated, against real gateway processes over raw
sockets: a request head past its byte limit or its deadline, a body past its size or its deadline, connections
past the limit, and `--workers N` running N processes that all answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from flopex.gateway import GatewayConfig, connection_limit, free_port
from tests.gateway.conftest import MODEL, ServeProcess, Server, emulator, http

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process memory from /proc")

LIMITS = {"max_header_bytes": 16_384, "header_timeout_s": 1.0, "body_timeout_s": 1.0, "max_body_bytes": 100_000}
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"


class Gateway(ServeProcess):
    """`flopex serve` with `config` written to `work`, its output in a log file there."""

    def __init__(self, config: dict[str, Any], work: Path, *args: str) -> None:
        path = work / f"gateway-{len(list(work.glob('gateway-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(config))
        super().__init__(path, path.with_suffix(".log"), *args)

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)


@contextmanager
def serving(config: dict[str, Any], work: Path, *args: str) -> Iterator[Gateway]:
    g = Gateway(config, work, *args)
    try:
        yield g
    finally:
        g.stop()


def config_for(backend: Server, **limits: Any) -> dict[str, Any]:
    spec = {"id": "h100", "base_url": f"{backend.url}/v1", "usd_per_hour": 2.0, "tokens_per_s": 2000.0}
    return {"models": {MODEL: {"backends": [spec]}}, "limits": limits}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with (
        emulator("H100-SXM", time_scale=0.0) as emu,
        serving(config_for(emu, **LIMITS), tmp_path_factory.mktemp("gw")) as g,
    ):
        yield g


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1000


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def answer(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (status, headers, body; 0 if the connection closed first)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the gateway closes the connection within `timeout` (reading and dropping what comes first)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def openai_error(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def peak_rss(gw: Gateway, clients: list[Callable[[], None]]) -> tuple[float, float]:
    """The gateway's RSS in MB before, and at its highest while, `clients` run (each in a thread)."""
    before = peak = gw.rss_mb()
    threads = [threading.Thread(target=client) for client in clients]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, gw.rss_mb())
        time.sleep(0.02)
    return before, peak


def chat_body(size: int) -> bytes:
    """A chat request of exactly `size` bytes."""
    base = json.dumps({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": ""}]})
    return base.replace('"content": ""', '"content": "' + "x" * (size - len(base)) + '"').encode()


def test_a_head_past_max_header_bytes_gets_431_and_the_gateway_keeps_its_memory(gw: Gateway) -> None:
    with connect(gw.port) as s:  # a head just under the limit is served
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 15_000 + b"\r\n\r\n")
        assert answer(s)[0] == 200
    with connect(gw.port) as s:  # past it, before the head ends: 431, and the connection is closed
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 17_000)
        status, headers, body = answer(s)
        assert status == 431 and headers["connection"] == "close" and headers["x-request-id"]
        assert openai_error(body)["code"] == "headers_too_large" and "16,384 bytes" in openai_error(body)["message"]
        assert closed(s)
    # 20 connections each sending 8 MB of headers that never end (the trial: 40 x 32 MB took 156 MB to 1.5 GB)
    sent: list[int] = []

    def flood() -> None:
        total = 0
        with connect(gw.port) as s:
            try:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
                while total < 8_000_000:
                    s.sendall(b"x-filler: " + b"a" * 8180 + b"\r\n")
                    total += 8192
            except OSError:
                pass
        sent.append(total)

    before, peak = peak_rss(gw, [flood] * 20)
    assert peak - before < 30, f"RSS went from {before:.0f} MB to {peak:.0f} MB"
    assert max(sent) < 8_000_000  # every flood was cut off
    assert http("GET", f"{gw.url}/healthz").status == 200


def test_a_head_that_trickles_gets_408_and_a_silent_connection_is_closed(gw: Gateway) -> None:
    with connect(gw.port) as s:
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n")
        status, headers, body = answer(s)  # no more bytes come: the head deadline (1 s) answers
        assert status == 408 and openai_error(body)["code"] == "request_timeout"
        assert 0.8 < time.monotonic() - start < 3 and closed(s)
    with connect(gw.port) as s:  # a byte every 0.2 s does not extend the deadline
        start = time.monotonic()
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-slow: " + b"a" * 100:
                s.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - start > 5:
                    break
        except OSError:
            pass
        assert 0.8 < time.monotonic() - start < 3
    with connect(gw.port) as s:  # a connection that sends nothing is closed, with no answer
        s.settimeout(3.0)
        assert s.recv(10) == b""
    with connect(gw.port) as s:  # a keep-alive connection's next request has its own deadline
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert answer(s)[0] == 200
        time.sleep(1.5)  # idle (the keep-alive timeout is 5 s), then a slow head
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert answer(s)[0] == 408


def test_a_body_that_trickles_gets_408(gw: Gateway) -> None:
    body = chat_body(1000)
    with connect(gw.port) as s:
        s.sendall(CHAT + b"content-length: %d\r\n\r\n" % len(body) + body[:500])
        start = time.monotonic()
        status, _, reply = answer(s)
        assert status == 408 and openai_error(reply)["code"] == "request_timeout"
        assert 0.8 < time.monotonic() - start < 3 and closed(s)
    with connect(gw.port) as s:  # sent whole within the deadline: answered
        s.sendall(CHAT + b"content-length: %d\r\n\r\n" % len(body) + body[:500])
        time.sleep(0.3)
        s.sendall(body[500:])
        assert answer(s)[0] == 200


def test_a_body_past_max_body_bytes_gets_413_as_soon_as_it_passes(gw: Gateway) -> None:
    with connect(gw.port) as s:  # at the limit: served
        body = chat_body(100_000)
        s.sendall(CHAT + b"content-length: %d\r\n\r\n" % len(body) + body)
        assert answer(s)[0] == 200
    with connect(gw.port) as s:  # a Content-Length past it: 413 before a byte of the body is sent
        s.sendall(CHAT + b"content-length: 300000000\r\nx-request-id: mine-1\r\n\r\n")
        status, headers, reply = answer(s)
        assert status == 413 and headers["x-request-id"] == "mine-1"
        error = openai_error(reply)
        assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    with connect(gw.port) as s:  # chunked: 413 once 150 kB came, with the upload still open
        s.sendall(CHAT + b"transfer-encoding: chunked\r\n\r\n")
        for _ in range(15):
            s.sendall(b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000))
        status, _, reply = answer(s)
        assert status == 413 and openai_error(reply)["code"] == "request_too_large"
        for _ in range(100):  # the rest of the upload is read and dropped; the connection stays usable
            s.sendall(b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000))
        s.sendall(b"0\r\n\r\nGET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert answer(s)[0] == 200

    def upload() -> None:  # 300 MB chunked (the trial: +400 MB before the 413)
        with connect(gw.port) as s:
            s.sendall(CHAT + b"transfer-encoding: chunked\r\n\r\n")
            sent, chunk = 0, b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
            try:
                while sent < 300_000_000:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the gateway closed it: the rest did not come within the body deadline
                pass

    before, peak = peak_rss(gw, [upload])
    assert peak - before < 30, f"RSS went from {before:.0f} MB to {peak:.0f} MB"


def test_connections_past_max_connections_get_503(tmp_path: Path) -> None:
    assert connection_limit(GatewayConfig().limits) == 2 * GatewayConfig().limits.max_in_flight
    with emulator("H100-SXM", time_scale=0.0) as emu, serving(config_for(emu, max_connections=8), tmp_path) as g:
        idle = [connect(g.port) for _ in range(8)]
        time.sleep(0.2)
        with connect(g.port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
            status, headers, body = answer(s)
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert openai_error(body)["code"] == "too_many_connections"
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert http("GET", f"{g.url}/healthz").status == 200


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _holder(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the gateway's end of the connection from `client_port` (from /proc/net/tcp)."""
    inode = next(
        (f[9] for f in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
         if f[1].endswith(f":{server_port:04X}") and f[2].endswith(f":{client_port:04X}")),
        None,
    )  # fmt: skip
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def test_workers_are_processes_that_all_answer(tmp_path: Path) -> None:
    with emulator("H100-SXM", time_scale=0.0) as emu, serving(config_for(emu), tmp_path, "--workers", "2") as g:
        workers = _children(g.proc.pid)
        answered: set[int] = set()
        deadline = time.time() + 30
        while len(answered) < 2 and time.time() < deadline:
            socks = [connect(g.port) for _ in range(8)]
            for s in socks:
                s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n\r\n")
            for s in socks:
                status, _, body = answer(s)
                holder = _holder(g.port, s.getsockname()[1], workers)
                if status == 200 and json.loads(body)["data"][0]["id"] == MODEL and holder is not None:
                    answered.add(holder)
                s.close()
        log = g.log.read_text()
    assert len(answered) == 2 and g.proc.pid not in answered, f"answered by {answered}; workers {workers}"
    said = " ".join(log.split())
    assert "2 worker processes share the port; /metrics sums their counters" in said
    assert "Each keeps its own backend health and ejections (set health.redis_url" in said


def test_workers_refuse_per_process_budgets(tmp_path: Path) -> None:
    config = {"models": {MODEL: {"backends": [{"id": "h100", "base_url": "http://127.0.0.1:9/v1", "usd_per_hour": 2.0,
              "tokens_per_s": 2000.0}]}}, "tenants": {"database_url": f"sqlite:///{tmp_path / 'l.db'}",
              "journal_dir": str(tmp_path / "journal")}}  # fmt: skip
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "flopex", "serve", "--config", str(path), "--workers", "2",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 2 and "tenants on SQLite and no Redis" in done.stderr


def _on_each_worker(g: Gateway, request: bytes, want: int = 2, within_s: float = 30.0) -> dict[int, list[bytes]]:
    """Send `request` on fresh connections until `want` workers have each answered it; their answers by pid."""
    workers = _children(g.proc.pid)
    answers: dict[int, list[bytes]] = {}
    deadline = time.time() + within_s
    while len(answers) < want and time.time() < deadline:
        socks = [connect(g.port) for _ in range(8)]
        for s in socks:
            s.sendall(request)
        for s in socks:
            status, _, body = answer(s)
            assert status == 200, body
            holder = _holder(g.port, s.getsockname()[1], workers)
            answers.setdefault(holder or 0, []).append(body)
            s.close()
    assert len([pid for pid in answers if pid]) >= want, f"answered by {list(answers)}; workers {workers}"
    return answers


def test_workers_sum_their_counters_on_metrics_and_share_backend_health_through_redis(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.ledger.conftest import fresh_redis

    redis_url = fresh_redis()
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    post = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s") % (len(body), body)  # fmt: skip
    with emulator("H100-SXM", time_scale=0.0) as emu:
        config = {**config_for(emu), "health": {"redis_url": redis_url}}
        with serving(config, tmp_path, "--workers", "2") as g:
            served = sum(len(v) for v in _on_each_worker(g, post).values())
            scrapes = _on_each_worker(g, b"GET /metrics HTTP/1.1\r\nhost: gw\r\n\r\n")
            views = _on_each_worker(g, b"GET /admin/backends HTTP/1.1\r\nhost: gw\r\n\r\n")
            log = " ".join(g.log.read_text().split())
    for pid, texts in scrapes.items():
        families = {f.name: f for f in text_string_to_metric_families(texts[-1].decode())}
        ok = sum(s.value for s in families["flopex_requests"].samples
                 if s.name == "flopex_requests_total" and s.labels["status"] == "200")  # fmt: skip
        assert ok == served, f"worker {pid}'s /metrics counts {ok} answers of the {served} both workers gave"
    assert all(json.loads(v[-1])["health_shared"] for v in views.values())
    assert "Backend health and ejections are shared through Redis" in log

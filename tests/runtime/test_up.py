"""``gateway up`` as a user runs it: a real process, the embedded Postgres, the printed
admin token and curl session, a token created through the admin API, a request through
the gateway to the demo upstream, and a clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
from standardwebhooks import Webhook as Verifier

from gateway.core.config import Settings, settings_fields
from gateway.runtime.up import Addresses, banner, walkthrough

START_DEADLINE = 25.0
STOP_DEADLINE = 15.0
SETTING_NAMES = {field.metadata["env"] for field in settings_fields()}
# The last line of the printed walk-through: everything is listening once it is out.
LAST_LINE = walkthrough("", "", "")[-1]


@dataclass
class Up:
    process: subprocess.Popen[str]
    output: list[str]
    stderr: Path

    def printed(self) -> str:
        return "".join(self.output)

    def diagnostics(self) -> str:
        return f"stdout:\n{self.printed()}\nstderr:\n{self.stderr.read_text()}"

    def walkthrough(self) -> list[str]:
        lines = [line.strip() for line in self.output]
        start = next(i for i, line in enumerate(lines) if line.startswith("export ADMIN_URL="))
        return lines[start : lines.index(LAST_LINE) + 1]

    def exported(self, name: str) -> str:
        for line in self.walkthrough():
            for word in shlex.split(line.removeprefix("export "))[:2]:
                key, _, value = word.partition("=")
                if key == name:
                    return value
        raise AssertionError(f"{name} not printed\n{self.diagnostics()}")


def _reader(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def clean_environ(data_dir: Path) -> dict[str, str]:
    """The caller's environment without any Tollgate setting, plus OS-chosen ports."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_PORT="0",
        ADMIN_PORT="0",
        GATEWAY_METRICS_PORT="0",
        LAST_USED_FLUSH_INTERVAL="0.1",
    )
    return env


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """Outside pytest's temporary root: running as root, the embedded server runs as
    another user, and any pytest starting meanwhile resets that root to mode 0700.
    Shared by the module's runs: the second start skips initdb, as a user's would."""
    path = Path(tempfile.mkdtemp(prefix="tollgate-up-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def up(tmp_path: Path, data_dir: Path) -> Iterator[Up]:
    with started_up(tmp_path, clean_environ(data_dir)) as running:
        yield running


@contextlib.contextmanager
def started_up(cwd: Path, env: dict[str, str]) -> Iterator[Up]:
    """``gateway up`` in ``cwd`` with ``env``, once it printed its walk-through; stopped after."""
    stderr = cwd / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "up"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    running = Up(process, [], stderr)
    deadline = time.monotonic() + START_DEADLINE
    try:
        while LAST_LINE not in running.printed():
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"gateway up printed no curl session in time\n{running.diagnostics()}")
            if line is None:
                pytest.fail(f"gateway up exited early\n{running.diagnostics()}")
            running.output.append(line)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM (so the embedded Postgres is stopped too), SIGKILL only as a last resort."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our own URL
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stops_within(pid: int, seconds: float) -> bool:
    """The postmaster removes its pid file a moment before its process ends."""
    deadline = time.monotonic() + seconds
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    """A local webhook receiver (a real HTTP server in a thread): its URL and what it got."""
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_up_delivers_webhooks_to_local_receivers(up: Up) -> None:
    admin_url, admin_token = up.exported("ADMIN_URL"), up.exported("ADMIN_TOKEN")
    status, project = call("POST", f"{admin_url}/v1/projects", admin_token, {"name": "hooks"})
    assert status == 201, project
    with webhook_receiver() as (url, received):
        base = f"{admin_url}/v1/projects/{project['id']}/webhooks"
        status, hook = call("POST", base, admin_token, {"url": url})  # a loopback address
        assert status == 201, hook
        status, sent = call("POST", f"{base}/{hook['id']}/test", admin_token, {})
        assert status == 202, sent
        headers, body = received.get(timeout=10)
    assert Verifier(hook["secret"]).verify(body, headers)["type"] == "webhook.test"
    assert headers["webhook-id"] == sent["event_id"]


def test_up_serves_a_token_through_the_gateway_and_stops_cleanly(up: Up, data_dir: Path) -> None:
    admin_url, gateway_url = up.exported("ADMIN_URL"), up.exported("GATEWAY_URL")
    admin_token = up.exported("ADMIN_TOKEN")
    assert len(admin_token) >= 32
    assert "embedded Postgres" in up.printed()
    postgres = postmaster_pid(data_dir)

    status, project = call("POST", f"{admin_url}/v1/projects", admin_token, {"name": "up test"})
    assert status == 201, project
    status, token = call("POST", f"{admin_url}/v1/projects/{project['id']}/tokens", admin_token, {})
    assert status == 201, token

    status, echo = call("GET", f"{gateway_url}/some/path?q=1", token["token"])
    assert status == 200, echo
    headers = {name.lower(): value for name, value in echo["headers"].items()}
    assert echo["path"] == "/some/path"
    assert echo["query"] == {"q": "1"}
    assert headers["x-project-id"] == project["id"]
    assert headers["x-token-id"] == token["id"]
    assert headers["x-request-id"]
    assert "authorization" not in headers

    status, _ = call("GET", f"{gateway_url}/some/path", "tg_not_a_token")
    assert status == 401

    metrics_url = re.search(r"metrics +(http://\S+)/metrics", up.printed())
    assert metrics_url, up.diagnostics()
    assert call("GET", f"{metrics_url[1]}/readyz", "")[0] == 200
    with urllib.request.urlopen(f"{metrics_url[1]}/metrics", timeout=10) as answer:  # noqa: S310
        exposition = answer.read().decode()
    assert 'gateway_requests_total{outcome="proxied"} 1.0' in exposition
    assert 'gateway_requests_total{outcome="invalid_token"} 1.0' in exposition
    assert "gateway_ready 1.0" in exposition.splitlines()

    up.process.send_signal(signal.SIGTERM)
    try:
        code = up.process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gateway up did not stop within {STOP_DEADLINE}s\n{up.diagnostics()}")
    assert code == 0, up.diagnostics()
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "Postgres still running"
    assert stops_within(postgres, 5.0), "the embedded Postgres is still running"
    assert "Traceback" not in up.stderr.read_text()


def _steps(lines: list[str]) -> list[list[str]]:
    """The walk-through cut before each numbered comment ("# 1. ..."): prelude, step 1, ..."""
    steps: list[list[str]] = [[]]
    for line in lines:
        if re.match(r"# \d+\. ", line):
            steps.append([])
        steps[-1].append(line)
    return steps


def _answers(output: str) -> list[tuple[int, str]]:
    """``curl -i`` output: (status, body) of each answer, in order."""
    found = re.split(r"^HTTP/1\.1 (\d{3}) .*$", output, flags=re.MULTILINE)[1:]
    return [(int(status), rest.split("\n\n", 1)[-1].strip()) for status, rest in pairs(found)]


def pairs(items: list[str]) -> list[tuple[str, str]]:
    return list(zip(items[::2], items[1::2], strict=True))


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed session uses curl")
def test_the_printed_walkthrough_works_step_by_step(up: Up, data_dir: Path) -> None:
    prelude, *steps = _steps(up.walkthrough())
    assert len(steps) == 5
    script = ["set -eu", *prelude]
    for number, step in enumerate(steps, 1):
        script += [f"printf '\\n@@%s\\n' {number}", *step]
    script.append('printf \'\\n@@vars %s %s %s\\n\' "$PROJECT_ID" "$TOKEN_ID" "$TOKEN"')
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{result.stderr}\n{up.diagnostics()}"
    assert result.stderr == ""
    before, *outputs, variables = result.stdout.split("\n@@")
    assert before == ""
    created, issued, called, listed, revoked = (o.split("\n", 1)[1] for o in outputs)
    project_id, token_id, token = variables.split()[1:]

    # 1 and 2: nothing printed, the ids and the token kept in variables.
    assert (created, issued) == ("", "")
    assert re.fullmatch(r"[0-9A-Za-z]{17}", project_id)
    assert re.fullmatch(rf"tg_{token_id}_[0-9A-Za-z]{{49}}", token)
    # 3: the upstream's echo of the call, with the gateway's identity headers.
    ((status, body),) = _answers(called)
    echo = json.loads(body)
    headers = {name.lower(): value for name, value in echo["headers"].items()}
    assert status == 200 and (echo["path"], echo["query"]) == ("/hello", {"name": "world"})
    assert (headers["x-project-id"], headers["x-token-id"]) == (project_id, token_id)
    assert "authorization" not in headers
    # 4: the listing shows the token masked, with its 30-day default expiry.
    (shown,) = json.loads(listed)["tokens"]
    assert shown["id"] == token_id and token not in listed
    lifetime = datetime.fromisoformat(shown["expires_at"]) - datetime.fromisoformat(
        shown["created_at"]
    )
    assert lifetime == timedelta(days=30)
    # 5: revoked, and the gateway refuses the token.
    (deleted, _), (refused, error) = _answers(revoked)
    assert (deleted, refused) == (204, 401)
    assert json.loads(error)["error"]["code"] == "invalid_token"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed session uses curl")
def test_a_failing_step_prints_the_api_error_not_a_traceback(up: Up) -> None:
    prelude, first, *_ = _steps(up.walkthrough())
    script = [*prelude, "export ADMIN_TOKEN=not-the-admin-token", *first, 'echo "[$PROJECT_ID]"']
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout == "[]\n"
    assert "no id in the answer:" in result.stderr
    assert "the admin token is not valid" in result.stderr
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr


def test_the_readme_shows_the_walkthrough_the_banner_prints() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Walk-through", 1)[1]
    shown = section.split("```sh\n", 1)[1].split("```", 1)[0]
    printed = walkthrough(
        "http://127.0.0.1:8081", "http://127.0.0.1:8080", "<the admin token printed by make run>"
    )
    assert shown.splitlines() == printed


def test_a_busy_port_is_one_line_and_exit_2(environ: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
        env.update(environ, ADMIN_PORT="0", GATEWAY_METRICS_PORT="0")
        env.pop("UPSTREAM_URL")
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "up", "--gateway-port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gateway:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"gateway: GATEWAY_PORT: 127.0.0.1:{port} is already in use")
    assert "Traceback" not in result.stderr


def test_banner_names_every_address_and_the_token() -> None:
    settings = Settings.from_env({"ADMIN_TOKEN": "a" * 40, "GATEWAY_HOST": "0.0.0.0"})  # noqa: S104
    where = Addresses(
        gateway="http://127.0.0.1:8080",
        admin="http://127.0.0.1:8081",
        metrics="http://127.0.0.1:8082",
        upstream="http://127.0.0.1:40000",
        demo=True,
    )
    text = banner(settings, where, embedded=True, generated=True)
    assert "gateway    http://127.0.0.1:8080" in text
    assert "admin API  http://127.0.0.1:8081/v1" in text
    assert "metrics    http://127.0.0.1:8082/metrics" in text
    assert "http://127.0.0.1:40000  (the built-in demo" in text
    assert "generated for this run" in text
    assert re.search(r"^  a{40}$", text, re.MULTILINE)


def test_walkthrough_quotes_an_admin_token_for_the_shell() -> None:
    lines = walkthrough("http://a:1", "http://g:2", "it's $HOME")
    assert shlex.split(lines[1]) == ["export", "ADMIN_TOKEN=it's $HOME"]


def test_banner_with_an_own_upstream_and_database() -> None:
    settings = Settings.from_env({"ADMIN_TOKEN": "b" * 40})
    where = Addresses(
        gateway="http://127.0.0.1:8080",
        admin="http://127.0.0.1:8081",
        metrics="http://127.0.0.1:8082",
        upstream="https://api.example.com",
        demo=False,
    )
    text = banner(settings, where, embedded=False, generated=False)
    assert "upstream   https://api.example.com\n" in text
    assert "built-in demo" not in text
    assert "database   DATABASE_URL" in text
    assert "Admin token (ADMIN_TOKEN):" in text

"""Leak reports (SPEC §13): POST /v1/leaks and GitHub's secret-scanning partner protocol.

Genuine tokens are revoked at once (DELETE + NOTIFY, the audit event, the token.leaked
webhook); the answer never says which strings were tokens; bad checksums cost nothing.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from admin.app import create_app
from admin.delivery import DeliveryOptions
from admin.leaks import AddressLimiter, LeakReports
from admin.metrics import AdminMetrics
from gateway.core.config import ConfigError, Settings
from gateway.core.errors import TooManyRequests
from gateway.core.journal import CLI, Actor
from gateway.core.rates import Rate
from gateway.core.store_webhooks import WebhookStore
from gateway.core.tokens import Hasher, checksum, generate, scanner_pattern
from tests.admin.test_api import new_project, new_token
from tests.conftest import ADMIN_AUTH
from tests.helpers import typo
from tests.relay import Relay

Client = Any
README = Path(__file__).resolve().parents[2] / "README.md"
NO_DELIVERY = DeliveryOptions(run=False)


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


def forged(real: str) -> str:
    """The real token's id with another secret, and a checksum that fits: looks genuine."""
    token = generate("tg")
    body = f"tg_{real.split('_')[1]}_{token.secret}"
    return body + checksum(body)


def unknown() -> str:
    return str(generate("tg"))


async def report(client: Client, tokens: list[str], **body: Any) -> tuple[int, Any]:
    async with client.session.post(
        client.make_url("/v1/leaks"), json={"tokens": tokens, **body}
    ) as response:
        return response.status, await response.json()


async def token_exists(client: Client, project_id: str, token_id: str) -> bool:
    response = await client.get(f"/v1/projects/{project_id}/tokens/{token_id}")
    return response.status == 200


def leak_count(text: str, result: str) -> float:
    match = re.search(rf'admin_leak_reports_total{{result="{result}"}} (\S+)', text)
    assert match, result
    return float(match[1])


# ---------------------------------------------------------------- POST /v1/leaks


async def test_a_leaked_token_is_revoked_everywhere_audited_and_announced(
    admin_client: Client, pg_pool: asyncpg.Pool, events: asyncio.Queue[dict[str, Any]]
) -> None:
    project = await new_project(admin_client)
    leaked = await new_token(admin_client, project["id"], description="CI")
    kept = await new_token(admin_client, project["id"])
    strings = [leaked["token"], unknown(), forged(kept["token"]), typo(kept["token"]), "hello"]
    source = "https://gist.example.com/someone/abc"
    async with admin_client.session.post(
        admin_client.make_url("/v1/leaks"), json={"tokens": strings, "source": source}
    ) as response:  # no credential
        assert (response.status, await response.json()) == (202, {"received": 5})

    assert not await token_exists(admin_client, project["id"], leaked["id"])
    assert await token_exists(admin_client, project["id"], kept["id"])
    event = await asyncio.wait_for(events.get(), 5)
    assert (event["kind"], event["token_id"]) == ("token_revoked", leaked["id"])
    audit = await pg_pool.fetch(
        "SELECT actor_type, actor_name, host(ip) AS ip, target_id FROM audit_events "
        "WHERE action = 'token.leaked' AND project_id = $1",
        project["id"],
    )
    assert [dict(row) for row in audit] == [
        {
            "actor_type": "leak_report",
            "actor_name": source,
            "ip": "127.0.0.1",
            "target_id": leaked["id"],
        }
    ]
    (data,) = await pg_pool.fetch(
        "SELECT data FROM outbox_events WHERE type = 'token.leaked' AND project_id = $1",
        project["id"],
    )
    announced = json.loads(data["data"])
    assert announced["source"] == source
    assert announced["token"] == {
        "id": leaked["id"],
        "project_id": project["id"],
        "description": "CI",
        "created_at": leaked["created_at"],
        "expires_at": leaked["expires_at"],
    }
    text = await (await admin_client.get("/metrics")).text()
    assert [leak_count(text, r) for r in ("revoked", "unknown", "bad_checksum")] == [1, 2, 2]


async def test_the_answer_is_the_same_whatever_the_strings_are(admin_client: Client) -> None:
    project = await new_project(admin_client)
    real = [(await new_token(admin_client, project["id"]))["token"] for _ in range(2)]
    answers = [
        await report(admin_client, real),
        await report(admin_client, [unknown(), unknown()]),
        await report(admin_client, [forged(real[0]), typo(real[1])]),
        await report(admin_client, ["not", "tokens"]),
    ]
    assert answers == [(202, {"received": 2})] * 4


async def test_every_string_with_a_good_checksum_costs_the_same_work(
    store: Any, pg_pool: asyncpg.Pool
) -> None:
    """One argon2 verify per token-shaped string, whether its id exists or not; and the
    revoking transaction runs either way (one round of statements whatever the mix)."""

    class Counting(Hasher):
        verified = 0

        def verify(self, secret_hash: str, secret: str) -> bool:
            Counting.verified += 1
            return super().verify(secret_hash, secret)

    hasher = Counting(time_cost=1, memory_cost=1024)
    project = await store.create_project("p", None, actor=CLI)
    real = generate("tg")
    await store.create_token(
        project.id,
        real.id,
        secret_hash=hasher.hash(real.secret),
        description="",
        expires_in_days=1,
        actor=CLI,
    )
    leaks = LeakReports(WebhookStore(pg_pool), hasher, "tg", AdminMetrics(CollectorRegistry()))
    actor = Actor("leak_report")
    work = []
    for strings in ([unknown()], [forged(str(real))], [typo(str(real)), "x"], [str(real)]):
        Counting.verified = 0
        verdicts = await leaks.report([(s, None) for s in strings], actor=actor)
        work.append((Counting.verified, verdicts))
    assert work == [
        (1, ["unknown"]),
        (1, ["unknown"]),
        (0, ["bad_checksum", "bad_checksum"]),
        (1, ["revoked"]),
    ]


async def test_bad_checksums_are_dropped_before_any_database_work(
    settings: Settings, database_url: str, aiohttp_client: Any
) -> None:
    relay = Relay(database_url)
    await relay.start()
    try:
        app = create_app(
            dataclasses.replace(settings, database_url=relay.url), delivery=NO_DELIVERY
        )
        client = await aiohttp_client(app)
        await relay.cut()  # the database is gone
        assert await report(client, [typo(unknown()), "garbage"]) == (202, {"received": 2})
        status, body = await report(client, [unknown()])
        assert (status, body["error"]["code"]) == (503, "unavailable")
    finally:
        await relay.close()


async def test_reports_are_limited_per_client_address(
    settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    limited = dataclasses.replace(settings, leak_report_rate=Rate(2, 60))
    client = await aiohttp_client(create_app(limited, delivery=NO_DELIVERY))
    assert [(await report(client, ["x"]))[0] for _ in range(2)] == [202, 202]
    async with client.session.post(client.make_url("/v1/leaks"), json={"tokens": ["x"]}) as answer:
        assert answer.status == 429
        assert (await answer.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(answer.headers["Retry-After"]) <= 30


def test_the_limit_counts_each_address_apart_and_recovers() -> None:
    now = [1000.0]
    limiter = AddressLimiter(Rate(2, 60), clock=lambda: now[0])
    for address in ("198.51.100.1", "198.51.100.2"):
        limiter.admit(address)
        limiter.admit(address)
        with pytest.raises(TooManyRequests):
            limiter.admit(address)
    now[0] += 30  # one interval later: one more report each
    limiter.admit("198.51.100.1")
    with pytest.raises(TooManyRequests):
        limiter.admit("198.51.100.1")


@pytest.mark.parametrize(
    "body",
    [{}, {"tokens": "tg_x"}, {"tokens": [1]}, {"tokens": ["x"] * 101}, {"tokens": [], "x": 1}],
)
async def test_malformed_reports_are_400(admin_client: Client, body: dict[str, Any]) -> None:
    async with admin_client.session.post(admin_client.make_url("/v1/leaks"), json=body) as answer:
        assert answer.status == 400


# ---------------------------------------------------------------- the scanner's regular expression


def readme_pattern() -> str:
    section = README.read_text().split("\n### Secret scanners\n", 1)[1]
    return re.search(r"```\n(.+)\n```", section)[1]  # type: ignore[index]


def test_the_readme_gives_the_scanner_regex_of_our_tokens() -> None:
    pattern = readme_pattern()
    assert pattern == scanner_pattern("tg")
    found = re.compile(pattern)
    for _ in range(200):
        raw = str(generate("tg"))
        assert found.fullmatch(raw) and found.findall(f'key="{raw}";') == [raw]
    raw = str(generate("tg"))
    near_misses = [
        raw[:-1],  # a character short
        raw + "x",  # one too many
        "x" + raw,  # inside a longer word
        raw.replace("_", "-"),
        "tgadm" + raw[2:],  # another prefix
        raw[:3] + raw[4:] + "0",  # the id a character short
        raw[:10] + "!" + raw[11:],  # not base62
    ]
    assert [miss for miss in near_misses if found.search(miss)] == []


# ---------------------------------------------------------------- GitHub secret scanning


@dataclasses.dataclass
class GitHubKeys:
    path: Path
    private: dict[str, ec.EllipticCurvePrivateKey]

    def write(self, *key_ids: str) -> None:
        for key_id in key_ids:
            self.private.setdefault(key_id, ec.generate_private_key(ec.SECP256R1()))
        listed = [
            {"key_identifier": key_id, "key": _pem(self.private[key_id]), "is_current": True}
            for key_id in key_ids
        ]
        self.path.write_text(json.dumps({"public_keys": listed}))

    def sign(self, key_id: str, body: bytes) -> dict[str, str]:
        signature = self.private[key_id].sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "Github-Public-Key-Identifier": key_id,
            "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
            "Content-Type": "application/json",
        }


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def github_keys(tmp_path: Path) -> GitHubKeys:
    keys = GitHubKeys(tmp_path / "github-keys.json", {})
    keys.write("k1")
    return keys


@pytest.fixture
async def github_client(
    settings: Settings, github_keys: GitHubKeys, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> Any:
    configured = dataclasses.replace(settings, github_scanning_keys_file=github_keys.path)
    return await aiohttp_client(create_app(configured, delivery=NO_DELIVERY), headers=ADMIN_AUTH)


def github_report(*tokens: str) -> bytes:
    reports = [
        {
            "token": raw,
            "type": "tollgate_token",
            "url": f"https://github.com/o/r/blob/x/f{n}",
            "source": "content",
        }
        for n, raw in enumerate(tokens)
    ]
    return json.dumps(reports).encode()


async def post_github(client: Client, body: bytes, headers: dict[str, str]) -> Any:
    async with client.session.post(
        client.make_url("/v1/leaks/github"), data=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_github_reports_are_verified_revoked_and_labelled(
    github_client: Client, github_keys: GitHubKeys, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(github_client)
    leaked = await new_token(github_client, project["id"])
    strings = [leaked["token"], unknown(), typo(unknown())]
    body = github_report(*strings)
    status, answer = await post_github(github_client, body, github_keys.sign("k1", body))
    assert status == 200
    assert answer == [
        {"token_raw": strings[0], "token_type": "tollgate_token", "label": "true_positive"},
        {"token_raw": strings[1], "token_type": "tollgate_token", "label": "false_positive"},
        {"token_raw": strings[2], "token_type": "tollgate_token", "label": "false_positive"},
    ]
    assert not await token_exists(github_client, project["id"], leaked["id"])
    actor = await pg_pool.fetchval(
        "SELECT actor_name FROM audit_events WHERE action = 'token.leaked' AND target_id = $1",
        leaked["id"],
    )
    assert actor == "https://github.com/o/r/blob/x/f0"


async def test_github_reports_without_a_valid_signature_are_401_and_change_nothing(
    github_client: Client, github_keys: GitHubKeys, tmp_path: Path
) -> None:
    project = await new_project(github_client)
    leaked = await new_token(github_client, project["id"])
    body = github_report(leaked["token"])
    signed = github_keys.sign("k1", body)
    other = GitHubKeys(tmp_path / "other.json", {})
    other.write("k1")  # the same name, another key
    attempts = [
        {"Content-Type": "application/json"},
        {**signed, "Github-Public-Key-Identifier": "k2"},
        {**signed, "Github-Public-Key-Signature": "not base64!"},
        github_keys.sign("k1", body + b" "),
        other.sign("k1", body),
    ]
    for headers in attempts:
        status, answer = await post_github(github_client, body, headers)
        assert (status, answer["error"]["code"]) == (401, "invalid_signature"), headers
    assert await token_exists(github_client, project["id"], leaked["id"])


async def test_a_new_key_file_is_used_without_a_restart(
    github_client: Client, github_keys: GitHubKeys
) -> None:
    body = github_report(unknown())
    github_keys.write("k2")
    assert (await post_github(github_client, body, github_keys.sign("k2", body)))[0] == 200
    assert (await post_github(github_client, body, github_keys.sign("k1", body)))[0] == 401
    github_keys.path.write_text("{not json")  # a broken update: the keys read before stay
    assert (await post_github(github_client, body, github_keys.sign("k2", body)))[0] == 200


async def test_github_reports_are_404_without_a_keys_file(admin_client: Client) -> None:
    status, answer = await post_github(admin_client, b"[]", {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (404, "github_scanning_not_configured")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "No such file"),
        ("{}", "not a GitHub key list"),
        ('{"public_keys": [{"key_identifier": "a", "key": "x"}]}', "not a PEM public key"),
        ('{"public_keys": []}', "no keys"),
    ],
)
async def test_a_missing_or_bad_keys_file_stops_the_start(
    settings: Settings, tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    app = create_app(
        dataclasses.replace(settings, github_scanning_keys_file=path), delivery=NO_DELIVERY
    )
    runner = web.AppRunner(app)
    with pytest.raises(ConfigError, match=says) as raised:
        await runner.setup()
    assert raised.value.variable == "GITHUB_SCANNING_KEYS_FILE"
    await runner.cleanup()


def test_admin_serve_with_a_bad_keys_file_exits_2_with_one_line(
    environ: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "keys.json").write_text('{"public_keys": 5}')
    env = {**environ, "GITHUB_SCANNING_KEYS_FILE": str(tmp_path / "keys.json"), "ADMIN_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "admin", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("admin: GITHUB_SCANNING_KEYS_FILE: cannot use")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

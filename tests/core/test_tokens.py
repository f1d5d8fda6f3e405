"""The token format: shape, checksum, masking and argon2id hashing (pure functions)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.tokens import (
    ALPHABET,
    SECRET_LEN,
    Hasher,
    Token,
    b62encode,
    generate,
    is_token_id,
    masked,
    new_id,
    parse,
)

# What a secret scanner would use to find leaked tokens.
TOKEN_RE = re.compile(r"\btg_[0-9A-Za-z]{17}_[0-9A-Za-z]{49}\b")

FAST = Hasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_a_token_has_the_documented_shape() -> None:
    raw = str(generate("tg"))
    assert len(raw) == 3 + 17 + 1 + 43 + 6
    assert TOKEN_RE.fullmatch(raw)
    assert TOKEN_RE.findall(f"leaked in a log line: {raw}, oops") == [raw]


def test_tokens_are_unique_and_use_the_whole_alphabet() -> None:
    raws = {str(generate("tg")) for _ in range(200)}
    assert len(raws) == 200
    assert {c for raw in raws for c in raw[3:] if c != "_"} == set(ALPHABET)


def test_a_generated_token_parses_back_to_itself() -> None:
    token = generate("acme")
    assert parse(str(token), "acme") == token
    assert parse(str(token), "tg") is None  # another deployment's prefix


@pytest.mark.parametrize("position", range(3, 70, 3))
def test_the_checksum_rejects_any_single_typo(position: int) -> None:
    raw = str(generate("tg"))
    for replacement in "0aZ_-":
        if raw[position] != replacement:
            typo = raw[:position] + replacement + raw[position + 1 :]
            assert parse(typo, "tg") is None


def test_the_checksum_rejects_swapped_neighbours() -> None:
    raw = str(generate("tg"))
    for i in range(3, len(raw) - 1):
        if raw[i] != raw[i + 1]:
            swapped = raw[:i] + raw[i + 1] + raw[i] + raw[i + 2 :]
            assert parse(swapped, "tg") is None, i


@pytest.mark.parametrize(
    "garbage",
    ["", "tg_", "Bearer tg_x", "tg_" + "z" * 17 + "_" + "z" * 49, "tg_\x00", "tg_é" * 30],
)
def test_garbage_is_rejected(garbage: str) -> None:
    assert parse(garbage, "tg") is None


def test_non_canonical_ids_are_not_ids() -> None:
    token = generate("tg")
    assert is_token_id(token.id)
    assert not is_token_id("z" * 17)  # above 2^101
    assert not is_token_id(token.id[:-1])
    assert not is_token_id(token.id + "\x00")


def test_masked_shows_the_id_and_nothing_of_the_secret() -> None:
    token = generate("tg")
    shown = masked("tg", token.id)
    assert shown.startswith(f"tg_{token.id}_")
    tail = shown.removeprefix(f"tg_{token.id}_")
    assert tail and not any(c.isalnum() for c in tail)
    assert token.secret not in shown and str(token) not in shown


def test_the_secret_never_shows_in_repr() -> None:
    token = generate("tg")
    assert token.secret not in repr(token)


def test_hashes_are_argon2id_with_the_configured_parameters() -> None:
    hasher = Hasher(time_cost=2, memory_cost=19456, parallelism=1)
    token = generate("tg")
    stored = hasher.hash(token.secret)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert token.secret not in stored
    assert hasher.verify(stored, token.secret)
    assert not hasher.verify(stored, generate("tg").secret)
    assert not hasher.verify("not a hash", token.secret)


def test_the_same_secret_hashes_differently_each_time() -> None:
    secret = generate("tg").secret
    assert FAST.hash(secret) != FAST.hash(secret)  # salted


# ---------------------------------------------------------------- properties


@given(st.text())
def test_any_string_parses_to_itself_or_is_rejected(text: str) -> None:
    token = parse(text, "tg")
    assert token is None or str(token) == text


@given(st.from_regex(r"tg_[0-9A-Za-z]{17}_[0-9A-Za-z]{49}", fullmatch=True))
def test_well_shaped_strings_parse_only_when_the_checksum_holds(text: str) -> None:
    token = parse(text, "tg")
    assert token is None or str(token) == text


def _edit(raw: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "append"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    char = data.draw(st.characters() | st.sampled_from(ALPHABET))
    return {
        "replace": raw[:at] + char + raw[at + 1 :],
        "insert": raw[:at] + char + raw[at:],
        "delete": raw[:at] + raw[at + 1 :],
        "truncate": raw[:at],
        "append": raw + char,
    }[kind]


@given(st.data())
def test_an_edited_token_is_rejected_unless_unchanged(data: st.DataObject) -> None:
    token = generate("tg")
    edited = _edit(str(token), data)
    parsed = parse(edited, "tg")
    if edited == str(token):
        assert parsed == token
    else:
        assert parsed is None


@given(st.binary(min_size=32, max_size=32))
def test_tokens_from_any_random_bits_round_trip(bits: bytes) -> None:
    value = int.from_bytes(bits, "big")
    token = Token("tg", new_id(), b62encode(value, SECRET_LEN))
    assert parse(str(token), "tg") == token

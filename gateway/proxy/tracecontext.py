"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the ``traceparent`` of a request.

A valid ``traceparent`` from the client goes upstream unchanged, with its ``tracestate``.
When it is absent or invalid, the gateway starts a trace: version ``00``, a random
trace id and parent id, and the *sampled* flag set (``01``). The flag says the caller
"may have recorded trace data"; the gateway does record the request, in its access-log
line under that trace id, and an upstream whose tracer follows its parent's decision
(OpenTelemetry's default ``ParentBased`` sampler) keeps recording as it did before a
gateway stood in front of it. ``tracestate`` is only meaningful with the ``traceparent``
it came with, so it is dropped when that one was replaced (spec §3.3: a vendor that
cannot parse ``traceparent`` must not use ``tracestate``).

Validity is spec §3.2 and its versioning rules, checked with slices and a character
set instead of a regular expression (this runs for every request): ``version "-"
trace-id "-" parent-id "-" flags``, lowercase hex; version ``ff`` is invalid; an
all-zero trace id or parent id is invalid; version ``00`` is exactly 55 characters,
a later version may carry more after a ``-``. Several ``traceparent`` fields are
invalid.
"""

from __future__ import annotations

import random
from typing import Final

from multidict import CIMultiDict

_LENGTH: Final = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2
_HEX_OR_DASH: Final = frozenset("0123456789abcdef-")
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16
_PARENT_BITS: Final = (1 << 64) - 1

# Not a secret (it travels in clear to the upstream): the fast generator, seeded from
# the system per process, is enough for ids that must only not collide.
_bits = random.getrandbits


def is_valid(value: str) -> bool:
    """Whether ``value`` is a ``traceparent`` this gateway passes on unchanged."""
    if len(value) < _LENGTH or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return False
    version = value[:2]
    if version == "00":
        if len(value) != _LENGTH:
            return False
    elif version == "ff" or (len(value) > _LENGTH and value[_LENGTH] != "-"):
        return False
    fields = value[:_LENGTH]  # the dashes are where they belong: the rest must be hex
    return (
        _HEX_OR_DASH.issuperset(fields)
        and fields.count("-") == 3
        and value[3:35] != _ZERO_TRACE
        and value[36:52] != _ZERO_PARENT
    )


def new() -> str:
    """A new ``traceparent``: version 00, random ids (never all zeros), sampled (01)."""
    ids = _bits(192)  # trace id and parent id in one draw and one formatting
    if not ids >> 64 or not ids & _PARENT_BITS:
        ids |= (1 << 64) | 1
    text = f"{ids:048x}"
    return f"00-{text[:32]}-{text[32:]}-01"


def of(headers: CIMultiDict[str]) -> str:
    """The request's ``traceparent`` if it has one valid one, else a new one."""
    given = headers.get("traceparent")
    if given is not None and is_valid(given) and len(headers.getall("traceparent")) == 1:
        return given
    return new()


def trace_id(traceparent: str) -> str:
    """The trace id of a valid ``traceparent`` (what the access log shows)."""
    return traceparent[3:35]

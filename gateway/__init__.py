"""Tollgate: an authenticating reverse proxy for API tokens."""

__version__ = "0.1.0"

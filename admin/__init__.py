"""Tollgate's admin side: the HTTP API, the web console and the command line."""

"""Processes and commands: the ``gateway`` CLI, the worker supervisor, health, ``up``."""

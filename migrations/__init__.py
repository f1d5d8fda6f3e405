"""Tollgate's SQL migrations, applied in file-name order by ``gateway migrate``."""

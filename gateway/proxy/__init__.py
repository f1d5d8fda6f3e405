"""The request path: bearer -> proof -> limit -> forward, and what keeps it current."""

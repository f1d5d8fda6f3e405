"""What the proxy and the admin side share; it knows nothing of serving requests."""

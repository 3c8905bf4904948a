"""Per-call controls every managed model goes through: tokens, events, cost, usage, retries, pacing, limits."""

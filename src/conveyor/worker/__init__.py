"""The worker runtime: fetch, claim, execute, apply the outcome."""

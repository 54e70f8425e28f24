"""One module per system under test: its job functions (imported by its worker processes)
and its harness-side adapter (a ``System`` subclass)."""

"""Conveyor's core: job types, states, retry policy, settings and errors. No I/O."""

"""Conveyor's benchmark suite (see docs/benchmarks.md)."""

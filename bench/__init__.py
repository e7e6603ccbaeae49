"""Carrier's benchmarks: side-by-side measurements, never part of the test run."""

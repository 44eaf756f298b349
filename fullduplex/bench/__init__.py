"""Benchmarks: Full-Duplex-Bench v1 scenarios and metrics, computed locally."""

"""Benchmarks: replay throughput against baselines, dashboard query latency, memory (see README)."""

"""Benchmarks: throughput, latency and memory of flowcraft, against the queue's own ceiling.

``python -m benchmarks --driver {memory,redis} --shape {chain,fanout} --size N --runs R
[--workers W] [--json]``; results are reported in BENCHMARKS.md.
"""

"""Latency benchmarks and the paper's quality comparison (Table I, Fig. 4)."""

"""Benchmarks (not tests): each module prints its figures; see bench/README.md."""

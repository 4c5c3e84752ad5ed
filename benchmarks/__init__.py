"""Reproducible benchmarks with their recorded results (see RESULTS.md)."""

"""Benchmark tables shipped with the package: trained accuracies of every cell of a search space (README.md)."""

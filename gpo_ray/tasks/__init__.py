"""Datasets, task names and metrics."""

"""Evaluation: overlap and per-case detection metrics, and the paper's table layouts."""

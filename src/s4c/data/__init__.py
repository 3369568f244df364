"""Cohorts on disk: the manifest format and the synthetic phantom generator."""

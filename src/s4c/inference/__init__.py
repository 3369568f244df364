"""Inference: tiling, overlap voting, the sliding-window driver and the end-to-end pipeline."""

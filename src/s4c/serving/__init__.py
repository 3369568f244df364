"""Serving S4C on Triton: request checks, the per-phase pipeline over BLS, the local server launcher and
the gRPC client (the configs and parameters they serve are :mod:`s4c.repository`'s). Nothing here imports
``triton_python_backend_utils`` at module level, so it is testable without a server; the Triton glue
receives that module as an argument."""

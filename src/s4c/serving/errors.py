"""Triton error codes across BLS: what each of our models answers, and how a caller reads a child's.

Light on imports on purpose: the segmenter stub imports it too.

Why a code travels in the message: python_backend up to r25.03 (Triton 2.56; the bundled server is
2.51, NGC 24.10) builds a BLS response's error from the message alone, so the caller's
``error().code()`` is INTERNAL whatever the child answered (``src/request_executor.cc``,
``InferResponseComplete``: ``PbError(pb_exception.what())``); r25.04 keeps ``TRITONSERVER_ErrorCode``.
An error raised while a BLS request is submitted (a full queue, a model that is not ready) reaches the
caller as a message only in every version (``src/infer_request.cc``). So our models append
:data:`CODE_TAG` to an error they answer to one of our own BLS requests, and the caller strips it; for
other children (the onnxruntime and tensorrt forms, Triton core) it reads ``code()`` and Triton core's
transient messages.
"""

from __future__ import annotations

import re

from s4c.serving.drain import INTERNAL_PREFIX

#: The Triton error code names (``pb_utils.TritonError.<NAME>`` in python_backend 23.09+).
CODE_NAMES = ("UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED", "ALREADY_EXISTS",
              "CANCELLED")

#: Appended to the message of an error answered to an internal (BLS) request.
CODE_TAG = " [s4c-code:{}]"
_TAG = re.compile(r" \[s4c-code:([A-Z_]+)\]$")

#: Triton core's own UNAVAILABLE messages (``triton-inference-server/core`` r24.10: scheduler_utils.cc,
#: dynamic_batch_scheduler.cc, model_lifecycle.cc, server.cc): transient failures a client may retry.
CORE_UNAVAILABLE = ("Exceeds maximum queue size", "Request timeout expired", "is not at ready state",
                    "Server exiting", "Server not ready", "Server is stopping")


class BlsError(RuntimeError):
    """A model called over BLS (a segmenter, the locator, or ``s4c`` from the dual-phase model) answered
    with an error. ``code`` is that answer's Triton error code name, passed on unchanged, so that a
    deterministic INVALID_ARG or INTERNAL is not turned into a retryable UNAVAILABLE."""

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        if code not in CODE_NAMES:
            raise ValueError(f"unknown Triton error code {code!r}")
        super().__init__(message)
        self.code = code


def is_internal_id(request_id: str | None) -> bool:
    """Whether a request id is one of our own BLS calls (it carries :data:`INTERNAL_PREFIX`)."""
    return (request_id or "").startswith(INTERNAL_PREFIX)


def tagged(message: str, code: str, internal: bool) -> str:
    """``message`` as answered: with the code appended when the caller is one of our BLS requests."""
    return message + CODE_TAG.format(code) if internal else message


def child_error(message: str, code: str | None, what: str) -> BlsError:
    """A child's error (its message and ``code()`` name, None when unknown) as a :class:`BlsError`.

    The code is, in order: the child's :data:`CODE_TAG`; ``code`` when it is not INTERNAL
    (python_backend r25.04+ passes codes through); UNAVAILABLE for Triton core's transient messages;
    else INTERNAL.
    """
    tag = _TAG.search(message)
    if tag is not None and tag.group(1) in CODE_NAMES:
        return BlsError(f"{what}: {message[: tag.start()]}", tag.group(1))
    if code in (None, "INTERNAL", "UNKNOWN") and any(text in message for text in CORE_UNAVAILABLE):
        code = "UNAVAILABLE"
    return BlsError(f"{what}: {message}", code or "INTERNAL")

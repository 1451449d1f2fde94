"""Exceptions raised by the hpo client: one class per gRPC status the coordinator uses."""

from typing import Optional

import grpc

__all__ = ["HpoError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
           "UnavailableError", "DeadlineExceededError", "UnauthenticatedError", "PermissionDeniedError"]


class HpoError(Exception):
    """An error from the coordinator, or from reaching it.

    code:    the gRPC status code name, e.g. "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE";
    details: the coordinator's message (what to fix), or what went wrong reaching it;
    status:  the grpc.StatusCode (None when the error did not come from gRPC).
    str(error) is "CODE: details", e.g.
    'INVALID_ARGUMENT: parameters[0] ("x"): low (1) must be below high (0)'.
    """

    def __init__(self, code: str, details: str, status: Optional[grpc.StatusCode] = None):
        self.code = code
        self.details = details
        self.status = status
        super().__init__(f"{code}: {details}")


class InvalidArgumentError(HpoError):
    """A bad spec, parameters or report (INVALID_ARGUMENT); the message says what to fix."""


class NotFoundError(HpoError):
    """An unknown study or trial, or no completed trial yet (NOT_FOUND)."""


class FailedPreconditionError(HpoError):
    """The trial is no longer running: pruned, failed, stopped, or its lease was lost (FAILED_PRECONDITION)."""


class UnavailableError(HpoError):
    """The coordinator cannot be reached (UNAVAILABLE)."""


class DeadlineExceededError(HpoError):
    """The coordinator did not answer in time (DEADLINE_EXCEEDED)."""


class UnauthenticatedError(HpoError):
    """The coordinator (or a proxy in front of it) refused the token (UNAUTHENTICATED)."""


class PermissionDeniedError(HpoError):
    """The token is not allowed to do this (PERMISSION_DENIED)."""


_BY_CODE = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
}


def error(code: str, details: str, status: Optional[grpc.StatusCode] = None) -> HpoError:
    """The HpoError subclass for a status code name."""
    return _BY_CODE.get(code, HpoError)(code, details, status)

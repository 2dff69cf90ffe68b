"""Request context: which HTTP request (or sweeper pass) a KV call belongs to.

The worker sets a `RequestContext` in a contextvar for every request, so layers below it
(the operation log, a gated KV in the conformance tests) can tell which request made a KV
call without the worker passing it down. A contextvar follows the request's task, and is
copied into tasks it starts, so concurrent requests never see each other's context.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass, replace

__all__ = [
    "RequestContext",
    "current_request",
    "set_request",
    "reset_request",
    "new_request_id",
    "valid_request_id",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is calling the KV: a request id, the endpoint (post, heal, read, sweep) and the message id."""

    request_id: str
    endpoint: str = ""
    message_id: str | None = None

    def with_message(self, message_id: str) -> RequestContext:
        """The same context, now naming the message the request is about."""
        return replace(self, message_id=message_id)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "kvheal_request", default=None
)


def current_request() -> RequestContext | None:
    """The context of the request running in this task, or None outside any request."""
    return _current.get()


def set_request(ctx: RequestContext) -> contextvars.Token:
    """Make `ctx` the current request context; returns the token for `reset_request`."""
    return _current.set(ctx)


def reset_request(token: contextvars.Token) -> None:
    """Restore the context that was current before `set_request` returned `token`."""
    _current.reset(token)


def new_request_id() -> str:
    """A fresh request id: 16 hex digits, unique across processes in practice."""
    return uuid.uuid4().hex[:16]


def valid_request_id(value: str | None) -> bool:
    """Whether a client-supplied request id (the X-Request-Id header) is acceptable."""
    return value is not None and bool(_REQUEST_ID.match(value))

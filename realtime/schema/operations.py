"""What each HTTP endpoint declares about itself, next to its code: `@operation(...)`.

The OpenAPI document (openapi.py) is built from these declarations and the app's route table;
the endpoints decode their bodies and query parameters with the same Structs they declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

Access = Literal["public", "customer", "admin"]


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from this operation's success response to another operation, so that a
    client (or a stateful fuzzer) can chain them: values are runtime expressions."""

    operation_id: str
    parameters: dict[str, str] = field(default_factory=dict)
    request_body: dict[str, str] | None = None
    description: str = ""


@dataclass(frozen=True)
class Operation:
    id: str  # operationId
    summary: str
    status: int = 200  # of the success response
    response: Any = None  # its Struct; None: no JSON body
    media_type: str = "application/json"
    body: Any = None  # the request body's Struct
    query: Any = None  # the query parameters' Struct
    not_found: str | None = None  # the code of a 404 for the path's {id}
    errors: tuple[int, ...] = ()  # statuses besides the ones derived from the rest
    access: Access = "public"
    rate_limited: bool = False
    database: bool = True  # 503 DATABASE_UNAVAILABLE when it cannot be reached
    idempotency_key: bool = False
    links: dict[str, Link] = field(default_factory=dict)
    description: str = ""


def operation(**fields: Any) -> Callable[[F], F]:
    """Declare an endpoint's operation; the endpoint itself is returned unchanged."""
    declared = Operation(**fields)

    def mark(endpoint: F) -> F:
        endpoint.__operation__ = declared  # type: ignore[attr-defined]
        return endpoint

    return mark


def declared(endpoint: Any) -> Operation | None:
    return getattr(endpoint, "__operation__", None)

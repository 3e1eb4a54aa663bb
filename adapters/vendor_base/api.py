"""Talking to a vendor's API as data: requests, responses, flows and the errors a flow can meet."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Body fields that are never written to a log, whatever the request.
SECRET_FIELDS = frozenset(
    {"password", "userName", "username", "accessToken", "refreshToken", "access_token", "refresh_token",
     "basicAuthPassword", "client_secret"}
)

T = TypeVar("T")

# ---------------------------------------------------------------- API requests as data


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request to the vendor's API, relative to the account's ``base_url``."""

    method: str
    path: str
    json: Any = None
    form: dict[str, str] | None = None  # application/x-www-form-urlencoded (OAuth token endpoints)
    params: dict[str, str] | None = None
    auth: bool = True  # send the account's bearer token
    purpose: str = ""  # why (shown in the log): "poll", "RequestStartTransaction", ...

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def summary(self) -> dict[str, Any]:
        """What the message log shows: the request with every secret masked."""
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.params:
            out["params"] = self.params
        if self.json is not None:
            out["json"] = redact(self.json)
        if self.form is not None:
            out["form"] = redact(self.form)
        if self.purpose:
            out["purpose"] = self.purpose
        return out


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def redact(value: Any) -> Any:
    """A copy of a JSON value with secret fields replaced by "***"."""
    if isinstance(value, dict):
        return {k: ("***" if k in SECRET_FIELDS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


Flow = Generator[ApiRequest, ApiResponse, T]


class VendorUnavailable(Exception):
    """The vendor cloud cannot be reached or keeps failing (outage, 5xx, timeout, budget exhausted)."""


class VendorAuthError(Exception):
    """The vendor refused the account's credentials."""


class VendorApiError(Exception):
    """The vendor answered a request with an error the adapter did not expect."""

    def __init__(self, request: ApiRequest, response: ApiResponse) -> None:
        super().__init__(f"{request.label}: HTTP {response.status}")
        self.request = request
        self.response = response


class Unsupported(Exception):
    """Raised by a command primitive: this vendor cannot do that."""


def send(request: ApiRequest) -> Flow[ApiResponse]:
    """A flow of one request: ``resp = yield from send(req)``."""
    response = yield request
    return response


def expect_ok(request: ApiRequest) -> Flow[Any]:
    """Send ``request``; return its JSON body, or raise ``VendorApiError`` on a non-2xx answer."""
    response = yield request
    if not response.ok:
        raise VendorApiError(request, response)
    return response.json


def drive(flow: Flow[T], respond: Callable[[ApiRequest], ApiResponse]) -> T:
    """Run a flow synchronously, answering each request with ``respond`` (tests, tools)."""
    try:
        request = next(flow)
        while True:
            try:
                response = respond(request)
            except VendorUnavailable as exc:  # as the runner does when the cloud is down
                request = flow.throw(exc)
            else:
                request = flow.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]

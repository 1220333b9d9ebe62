"""Which door, and which of its actions, a request is for: the route table of the registered doors.

Every door declares its endpoints (`ClientFormat.endpoints`); the table is theirs in registry order,
after the bridge's own `GET /health` and `GET /llmbridge/status`. The endpoint whose path takes the
request most specifically decides (see `Endpoint`); a request no endpoint takes is answered with a
404 in the dialect of the door whose path it was, else of the door whose `prefixes` it is under,
else of the default door.
"""

from __future__ import annotations

from dataclasses import dataclass
from re import Match
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

from llmbridge.errors import BridgeError, NotFound
from llmbridge.formats.base import DEFAULT_OPTIONS, Action, ClientFormat, Endpoint, RenderOptions

HEALTH = Endpoint("GET", "/health", "health")
STATUS = Endpoint("GET", "/llmbridge/status", "status")  # the accounts' state; needs a client key


@dataclass
class Route:
    client_format: ClientFormat
    action: Action
    model: str | None = None  # from the path, where the door puts it there
    stream: bool | None = None  # from the path, where the door puts it there
    options: RenderOptions = DEFAULT_OPTIONS  # for the stream renderer
    pin: str | None = None  # `/<account or provider>/v1/...`: the accounts that may answer (`llmbridge.aliases`)


class NoRoute(Exception):
    """A request no route takes, with the dialect to answer it in."""

    def __init__(self, client_format: ClientFormat, error: BridgeError) -> None:
        self.client_format, self.error = client_format, error


class Router:
    def __init__(self, formats: list[ClientFormat]) -> None:
        self.formats = formats
        self.default = formats[0]  # answers /health and paths no door claims
        own = [(self.default, HEALTH), (self.default, STATUS)]
        self.table = own + [(fmt, e) for fmt in formats for e in fmt.endpoints]

    def route(self, method: str, target: str, headers: Mapping[str, str] | None = None) -> Route:
        """The route for a request (`target`: path and query string); NoRoute if there is none."""
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        taken = [
            (fmt, endpoint, match)
            for fmt, endpoint in self.table
            if (match := endpoint.takes(path, headers or {}, query))
        ]
        if not taken:
            raise self.no_route(self._owner(path), method, path)
        best = max(endpoint.specificity for _, endpoint, _ in taken)
        deciding = [found for found in taken if found[1].specificity == best]
        for fmt, endpoint, match in deciding:
            if endpoint.method == method:
                return _route(fmt, endpoint, match)
        raise self.no_route(deciding[0][0], method, path)

    def _owner(self, path: str) -> ClientFormat:
        """The door whose `prefixes` hold `path` (the longest prefix wins), else the default door."""
        owners = [(len(prefix), fmt) for fmt in self.formats for prefix in fmt.prefixes if path.startswith(prefix)]
        return max(owners, key=lambda owner: owner[0])[1] if owners else self.default

    def no_route(self, fmt: ClientFormat, method: str, path: str) -> NoRoute:
        served = [line.partition(" ")[2] for door in self.formats for line in door.headline]
        listing = ", ".join(served[:-1]) + " and " + served[-1] if len(served) > 1 else "".join(served)
        return NoRoute(fmt, NotFound(f"no route for {method} {path}; the bridge serves {listing}"))


def _route(fmt: ClientFormat, endpoint: Endpoint, match: Match[str]) -> Route:
    raw_model = match.groupdict().get("model")
    model = fmt.model_from_path(raw_model) if raw_model is not None else None
    return Route(fmt, endpoint.action, model=model, stream=endpoint.stream, options=endpoint.options)

"""Datasette plugin loaded by `llmbridge browse` (`--plugins-dir`): a request whose Host header is not
a local name, or one the user allowed, gets a 403 before Datasette sees it (see
`llmbridge.recorder.browse` for why: DNS rebinding)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from datasette import hookimpl

from llmbridge.recorder.browse import host_allowed, names_from_env

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@hookimpl  # type: ignore[untyped-decorator]  # pluggy's marker is not annotated
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    allowed = names_from_env()

    def wrap(app: ASGIApp) -> ASGIApp:
        async def host_checked(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") in ("http", "websocket"):
                hosts = [value for name, value in scope.get("headers", []) if name.lower() == b"host"]
                host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
                if not host_allowed(host, allowed):
                    await _forbidden(send, host)
                    return
            await app(scope, receive, send)

        return host_checked

    return wrap


async def _forbidden(send: Any, host: str | None) -> None:
    body = (
        f"403 Forbidden: the Host {host!r} is not a local name. llmbridge browse answers only "
        f"127.0.0.1, localhost and [::1] (and names given with --allow-host).\n"
    ).encode("utf-8", "replace")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""The upstream client's transport: httpx's API over aiohttp's connections.

Why: per upstream request, httpx's own transport (httpcore + h11, pure Python) cost the bridge about
1.1 ms of CPU and every streamed chunk is parsed by h11 a line at a time; aiohttp parses HTTP/1.1
in C (llhttp). scripts/bench measured an addon making the same call through each: 2.7 vs 1.6 ms
of CPU per request. The rest of the bridge keeps speaking httpx (requests built with each
provider's exact headers and order, `httpx.Response`, httpx's errors, content decoding, proxies from
the environment), so this module is the only place that knows aiohttp is underneath.

What goes on the wire is the `httpx.Request` as built: its headers in their order and case, its body,
nothing added (aiohttp's automatic headers are switched off; it adds only a Content-Length that
httpx's request already carries) and no cookies kept between requests.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

# aiohttp adds these unless told not to; the request built by httpx (or a provider copying its
# client's exact headers) says what is sent.
NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# aiohttp's default limit for one header line is 8 KiB; h11's (httpx's) is 64 KiB: keep what was accepted.
MAX_HEADER_BYTES = 64 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending each request over a shared aiohttp connection pool."""

    def __init__(self, keepalive_seconds: float = 5.0, max_keepalive: int = 100) -> None:
        self.keepalive_seconds = keepalive_seconds
        self.max_keepalive = max_keepalive
        # the same certificate authorities httpx would trust (certifi, or SSL_CERT_FILE/SSL_CERT_DIR)
        self.ssl_context: ssl.SSLContext = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        """The pool, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # no cap: the accounts' max_concurrent bound the requests under way (see app.py)
                keepalive_timeout=self.keepalive_seconds,  # httpx's default expiry
                ssl=self.ssl_context,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx undoes the content encoding, as it did before
                trust_env=False,  # proxies from the environment are httpx's (it mounts its own transport)
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw)
        body = await request.aread()
        try:
            response = await self._session_now().request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx already encoded it: send it as it is
                headers=headers,
                data=body or None,
                allow_redirects=False,
                skip_auto_headers=NOT_ADDED,
                timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise as_httpx_error(e, request, connecting=True) from e
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=AiohttpBody(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpBody(httpx.AsyncByteStream):
    """A response body as httpx reads it: each piece as it arrives, aiohttp's errors as httpx's."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self.response = response
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as e:
            raise as_httpx_error(e, self.request, connecting=False) from e

    async def aclose(self) -> None:
        # A body read to its end gives its connection back to the pool; one left unread closes it.
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


def as_httpx_error(error: BaseException, request: httpx.Request, connecting: bool) -> httpx.TransportError:
    """aiohttp's (or asyncio's) exception as the httpx error the bridge classifies: timeouts stay
    timeouts (connect or read), a connection that could not be made a ConnectError, anything that
    broke an exchange under way a RemoteProtocolError or ReadError."""
    message = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(error, TimeoutError):  # aiohttp's socket-read timeouts are TimeoutErrors too
        return httpx.ReadTimeout(message, request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(error, aiohttp.ClientOSError) and connecting:
        return httpx.ConnectError(message, request=request)
    return httpx.ReadError(message, request=request)

"""The Qwen Code release the qwen provider reproduces, and what that release puts on the wire besides
the body: headers and their order.

Read from `@qwen-code/qwen-code` 0.24.4 (the npm package's bundled source) and captured from that
release run headless against a local server (its DashScope provider, in `--auth-type openai` mode
with `DASHSCOPE_PROXY_BASE_URL`: 0.24.4 refuses its own Qwen OAuth login since the free tier ended,
and the two modes differ only in the token and `X-DashScope-AuthType`). Qwen Code builds an OpenAI
SDK (5.11.0) client whose `defaultHeaders` are its User-Agent and the `X-DashScope-*` headers; the
SDK adds its `X-Stainless-*` headers and the bearer token; its fetch (undici, with Qwen Code's
dispatcher) sends the names lowercase and sorted, after `host` and `connection`, then adds
`accept-language`, `sec-fetch-mode`, `accept-encoding` and `content-length`:

    host, connection, accept, authorization, content-type, user-agent, x-dashscope-authtype,
    x-dashscope-cachecontrol, x-dashscope-useragent, x-stainless-arch, x-stainless-lang,
    x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime,
    x-stainless-runtime-version, accept-language, sec-fetch-mode, accept-encoding, content-length

`accept` stays `application/json` on streams (the SDK does not change it). Node's fetch asks for
`br, gzip, deflate` over https and `gzip, deflate` over plain http.
"""

from __future__ import annotations

import platform
import re
import sys

CLIENT_VERSION = "0.24.4"  # the Qwen Code release whose requests we reproduce
OPENAI_SDK_VERSION = "5.11.0"  # the OpenAI Node SDK bundled in that release (X-Stainless-Package-Version)
NODE_VERSION = "v22.23.3"  # X-Stainless-Runtime-Version: Qwen Code 0.24 needs Node >= 22 (the newest 22.x)
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
AUTH_TYPE = "qwen-oauth"  # X-DashScope-AuthType for the Qwen OAuth login

_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i386": "ia32", "i686": "ia32"}
# the OpenAI SDK's names for Node's process.platform (X-Stainless-OS)
_OS = {"linux": "Linux", "darwin": "MacOS", "win32": "Windows", "freebsd": "FreeBSD", "openbsd": "OpenBSD"}


def node_arch() -> str:
    """`process.arch` for this machine."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def node_platform() -> str:
    """`process.platform` for this machine (`sys.platform` uses the same names)."""
    return "win32" if sys.platform.startswith("win") else sys.platform


def user_agent(version: str = CLIENT_VERSION) -> str:
    return f"QwenCode/{version} ({node_platform()}; {node_arch()})"


def headers(token: str, *, https: bool, version: str = CLIENT_VERSION) -> dict[str, str]:
    """The request headers in Qwen Code's order, without the ones the transport adds from the request
    itself (host, connection, content-length: `wire_headers`)."""
    agent = user_agent(version)
    return {
        "accept": "application/json",
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "user-agent": agent,
        "x-dashscope-authtype": AUTH_TYPE,
        "x-dashscope-cachecontrol": "enable",
        "x-dashscope-useragent": agent,
        "x-stainless-arch": node_arch(),
        "x-stainless-lang": "js",
        "x-stainless-os": _OS.get(node_platform(), f"Other:{node_platform()}"),
        "x-stainless-package-version": OPENAI_SDK_VERSION,
        "x-stainless-retry-count": "0",
        "x-stainless-runtime": "node",
        "x-stainless-runtime-version": NODE_VERSION,
        "accept-language": "*",
        "sec-fetch-mode": "cors",
        "accept-encoding": "br, gzip, deflate" if https else "gzip, deflate",
    }


def wire_headers(base: dict[str, str], host: str, body: bytes | None) -> list[tuple[str, str]]:
    """`base` with `host` and `connection` first and `content-length` last, as Node's fetch sends them."""
    length = [("content-length", str(len(body)))] if body is not None else []
    return [("host", host), ("connection", "keep-alive"), *base.items(), *length]

"""The Qwen Code release the qwen provider reproduces, and what that release puts on the wire besides
the body: headers and their order.

Read from `@qwen-code/qwen-code` 0.24.4 (the npm package's bundled source) and observed by running
its bundled OpenAI SDK (5.11.0) with Qwen Code's default headers on Node's fetch against a local
server. Qwen Code builds an OpenAI client whose `defaultHeaders` are its own User-Agent and the
`X-DashScope-*` headers (DashScope provider `buildHeaders`); the SDK adds its `X-Stainless-*` headers
and the bearer token; Node's fetch adds `accept-language`, `sec-fetch-mode` and `accept-encoding`,
then `content-length`. Names keep the case they were set with; `Host` and `Connection` come first:

    host, connection, Accept, X-Stainless-Retry-Count, X-Stainless-Lang, X-Stainless-Package-Version,
    X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, authorization,
    User-Agent, X-DashScope-CacheControl, X-DashScope-UserAgent, X-DashScope-AuthType, content-type,
    accept-language, sec-fetch-mode, accept-encoding, content-length

`Accept` stays `application/json` on streams (the SDK does not change it). Node's fetch asks for
`br, gzip, deflate` over https and `gzip, deflate` over plain http.
"""

from __future__ import annotations

import platform
import re
import sys

CLIENT_VERSION = "0.24.4"  # the Qwen Code release whose requests we reproduce
OPENAI_SDK_VERSION = "5.11.0"  # the OpenAI Node SDK bundled in that release (X-Stainless-Package-Version)
NODE_VERSION = "v22.22.0"  # X-Stainless-Runtime-Version: Qwen Code 0.24 needs Node >= 22
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
        "Accept": "application/json",
        "X-Stainless-Retry-Count": "0",
        "X-Stainless-Lang": "js",
        "X-Stainless-Package-Version": OPENAI_SDK_VERSION,
        "X-Stainless-OS": _OS.get(node_platform(), f"Other:{node_platform()}"),
        "X-Stainless-Arch": node_arch(),
        "X-Stainless-Runtime": "node",
        "X-Stainless-Runtime-Version": NODE_VERSION,
        "authorization": f"Bearer {token}",
        "User-Agent": agent,
        "X-DashScope-CacheControl": "enable",
        "X-DashScope-UserAgent": agent,
        "X-DashScope-AuthType": AUTH_TYPE,
        "content-type": "application/json",
        "accept-language": "*",
        "sec-fetch-mode": "cors",
        "accept-encoding": "br, gzip, deflate" if https else "gzip, deflate",
    }


def wire_headers(base: dict[str, str], host: str, body: bytes | None) -> list[tuple[str, str]]:
    """`base` with `host` and `connection` first and `content-length` last, as Node's fetch sends them."""
    length = [("content-length", str(len(body)))] if body is not None else []
    return [("host", host), ("connection", "keep-alive"), *base.items(), *length]

"""The Gemini CLI release the gemini-cli provider reproduces, and what that release puts on the wire
besides the body: headers, their order, and the metadata of its start-up calls.

Moving to a new official release is changing `CLIENT_VERSION` (or an account's `client_version`)
plus whatever `llmbridge drift` reports against a capture of that release (README, "Drift").

Observed from Gemini CLI 0.61.0 pointed at a local Code Assist (`CODE_ASSIST_ENDPOINT`): every call
goes through google-auth-library's gaxios transport on Node's fetch, which sends lowercase header
names in this order (fetch adds `host` and `connection` last):

    accept, accept-encoding, authorization, content-length, content-type, user-agent,
    x-goog-api-client, host, connection

(`Host` and `Connection` capitalized, the rest lowercase). `accept` is `application/json` on the
JSON calls (loadCodeAssist, onboardUser, operations,
retrieveUserQuota, listExperiments, countTokens) and `*/*` on the SSE generation stream;
`user-agent` is `GeminiCLI-<client name>/<version>/<model> (<platform>; <arch>; <surface>)`
with the auth library's `google-api-nodejs-client/<ver>` appended, and `x-goog-api-client` names
the Node version (`gl-node/<ver>`).
"""

from __future__ import annotations

import platform
import re
import sys

CLIENT_VERSION = "0.61.0"  # the Gemini CLI release whose requests we reproduce
CLIENT_NAME = "tui"  # the CLI's client name: "GeminiCLI-tui" in the User-Agent
SURFACE = "terminal"
AUTH_LIBRARY = "google-api-nodejs-client/10.9.0"  # what google-auth-library appends to the UA
NODE_VERSION = "20.20.2"  # gl-node/<ver>: the Node release the CLI ran on where it was captured
ACCEPT_ENCODING = "gzip, deflate, br"
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")

_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i386": "ia32", "i686": "ia32"}
# Code Assist's ClientMetadata.Platform for Node's (platform, arch)
_PLATFORM = {
    ("linux", "x64"): "LINUX_AMD64",
    ("linux", "arm64"): "LINUX_ARM64",
    ("darwin", "x64"): "DARWIN_AMD64",
    ("darwin", "arm64"): "DARWIN_ARM64",
    ("win32", "x64"): "WINDOWS_AMD64",
}


def node_arch() -> str:
    """`process.arch` for this machine."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def node_platform() -> str:
    """`process.platform` for this machine (`sys.platform` uses the same names)."""
    return "win32" if sys.platform.startswith("win") else sys.platform


def user_agent(model: str, version: str = CLIENT_VERSION) -> str:
    return f"GeminiCLI-{CLIENT_NAME}/{version}/{model} ({node_platform()}; {node_arch()}; {SURFACE}) {AUTH_LIBRARY}"


def headers(token: str, model: str, *, stream: bool, version: str = CLIENT_VERSION) -> dict[str, str]:
    """The request headers in the CLI's order, without the ones the transport adds from the request
    itself (content-length, host, connection: `wire_headers`)."""
    return {
        "accept": "*/*" if stream else "application/json",
        "accept-encoding": ACCEPT_ENCODING,
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "user-agent": user_agent(model, version),
        "x-goog-api-client": f"gl-node/{NODE_VERSION}",
    }


def wire_headers(base: dict[str, str], host: str, body: bytes | None) -> list[tuple[str, str]]:
    """`base` with content-length in its place (after authorization, for a body) and `Host` and
    `Connection` last, as Node's fetch sends them."""
    out: list[tuple[str, str]] = []
    for name, value in base.items():
        if name == "content-type":
            if body is None:
                continue  # a GET carries neither
            out.append(("content-length", str(len(body))))
        out.append((name, value))
    return [*out, ("Host", host), ("Connection", "keep-alive")]


def client_metadata(project: str | None, version: str = CLIENT_VERSION) -> dict[str, str]:
    """The `metadata` of listExperiments, in the CLI's key order."""
    metadata = {
        "ideName": "IDE_UNSPECIFIED",
        "pluginType": "GEMINI",
        "ideVersion": version,
        "platform": _PLATFORM.get((node_platform(), node_arch()), "PLATFORM_UNSPECIFIED"),
        "updateChannel": update_channel(version),
    }
    if project:
        metadata["duetProject"] = project
    return metadata


def update_channel(version: str) -> str:
    if "nightly" in version:
        return "nightly"
    return "preview" if "preview" in version else "stable"

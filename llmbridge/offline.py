"""Offline mode: `llmbridge serve --replay DIR` answers every door from a replay corpus, with no accounts.

The bridge starts a replay server (`llmbridge.replay`) on 127.0.0.1 inside its own process, and one
account per provider the corpus holds, pointed at it with stand-in credentials (written to a private
temporary folder, removed at exit). Requests go through the real front doors, translators, pool and
decoders; only the upstream is a recording. So a newcomer tries every door with one command, and a
recorded session (an agent's included) is reproduced offline from exported fixtures.

A request whose upstream call the corpus holds exactly gets that recording, each once and in order; any
other gets the closest recording of the same call (logged), so any prompt gets an answer; one of the
other kind (a stream for a non-stream call, or the reverse) is converted when the corpus has none of
the kind asked (`llmbridge.replay_kinds`). Nothing is recorded to the database: the answers are not a
provider's.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from llmbridge.config import AccountConfig
from llmbridge.errors import ConfigError
from llmbridge.recorder.export import FIXTURE_FORMAT
from llmbridge.replay import Fixture, ReplayServer, load_fixtures


class OfflineCorpus:
    """A replay corpus served to the bridge's own accounts. The listening socket is bound at once
    (the accounts need its address before the event loop runs); it serves from `start()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fixtures = corpus_fixtures(directory)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.server = ReplayServer(self.fixtures, nearest=True)
        self.server.port = self.socket.getsockname()[1]
        self.workdir = Path(tempfile.mkdtemp(prefix="llmbridge-replay-"))

    def accounts(self) -> list[AccountConfig]:
        """One account per provider of the corpus, named `replay-<provider>`."""
        from llmbridge.providers.base import provider_class

        by_provider: dict[str, list[Fixture]] = {}
        for fixture in self.fixtures:
            by_provider.setdefault(str(fixture.data.get("provider")), []).append(fixture)
        return [
            provider_class(name).replay_account(
                f"replay-{name}", self.server.base_url, [f.data for f in group], self.workdir
            )
            for name, group in sorted(by_provider.items())
        ]

    async def start(self) -> None:
        self.socket.listen(100)
        await self.server.start(sock=self.socket)

    async def close(self) -> None:
        await self.server.close()
        self.socket.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> str:
        exact = sum(f.used for f in self.fixtures)
        converted = sum("; converted from a" in line for line in self.server.approximated)
        return (
            f"{len(self.fixtures)} recordings from {self.directory} ({exact} replayed exactly, "
            f"{len(self.server.approximated)} calls answered from the nearest, {converted} of them "
            "converted from a recording of the other kind: stream or not)"
        )


def corpus_fixtures(directory: Path) -> list[Fixture]:
    """The fixtures under `directory` (one level of sub-folders too), checked: a ConfigError says what is wrong."""
    from llmbridge.providers.base import PROVIDERS

    if not directory.is_dir():
        raise ConfigError(f"--replay {directory}: no such folder (give a folder of replay fixtures, e.g. replay/demo)")
    folders = [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]
    try:
        fixtures = load_fixtures(folders)
    except ValueError as e:
        raise ConfigError(f"--replay {directory}: a file is not JSON: {e}") from None
    for fixture in fixtures:
        if fixture.data.get("format") != FIXTURE_FORMAT:
            raise ConfigError(f"--replay: {fixture.path} is not a replay fixture (written by llmbridge export-fixture)")
        if fixture.data.get("provider") not in PROVIDERS:
            raise ConfigError(f"--replay: {fixture.path} is from provider {fixture.data.get('provider')!r}, unknown")
    if not fixtures:
        raise ConfigError(f"--replay {directory}: no fixtures (*.json written by llmbridge export-fixture) in it")
    return fixtures

"""The addon layer in mitmproxy's own test kit: safe defaults, scrubbing, and hook failures."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from addons.openai_bridge import DEAD_TARGET, OpenAIBridge
from llmbridge.config import DEFAULT_PORT
from tests.bridge_process import CLIENT_KEY, write_config


@pytest.fixture
def configured(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    config = write_config(tmp_path / "bridge.toml", [], record=False)
    addon = OpenAIBridge()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, bridge_config=str(config))
        yield addon, tctx


def test_safe_defaults_applied(configured):
    _, tctx = configured
    options = tctx.options
    assert options.mode == [DEAD_TARGET]
    assert options.listen_host == "127.0.0.1" and options.listen_port == DEFAULT_PORT
    assert options.connection_strategy == "lazy" and options.http2 is False


def test_user_choices_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    addon = OpenAIBridge()
    with taddons.context() as tctx:
        tctx.options.update(listen_port=9999)
        tctx.master.addons.add(addon)
        assert tctx.options.listen_port == 9999
        assert tctx.options.listen_host == "127.0.0.1"


def make_flow(path: str = "/v1/chat/completions", body: bytes = b"{}"):
    request = tutils.treq(
        method=b"POST",
        path=path.encode(),
        content=body,
        headers=((b"authorization", f"Bearer {CLIENT_KEY}".encode()), (b"content-type", b"application/json")),
    )
    return tflow.tflow(req=request)


def test_failing_hook_answers_json_500_and_never_forwards(configured):
    addon, _ = configured

    async def run():
        await addon.app.start()

        async def explode(incoming):
            raise RuntimeError("boom")

        addon.app.bridge.handle = explode
        flow = make_flow()
        await addon.request(flow)
        await addon.app.stop()
        return flow

    flow = asyncio.run(run())
    assert flow.response.status_code == 500
    assert json.loads(flow.response.content)["error"]["type"] == "server_error"


def test_failing_hook_answers_in_the_routes_dialect(configured):
    addon, _ = configured

    async def run():
        await addon.app.start()

        async def explode(incoming):
            raise RuntimeError("boom")

        addon.app.bridge.handle = explode
        flow = make_flow(path="/v1/messages")
        await addon.request(flow)
        await addon.app.stop()
        return flow

    flow = asyncio.run(run())
    assert flow.response.status_code == 500
    assert json.loads(flow.response.content) == {
        "type": "error",
        "error": {"type": "api_error", "message": "internal error in the bridge; see its log"},
    }


def test_local_error_is_answered_in_place_and_key_is_scrubbed(configured):
    addon, _ = configured

    async def run():
        await addon.app.start()
        flow = make_flow(body=b"not json")
        await addon.request(flow)
        await addon.app.stop()
        return flow

    flow = asyncio.run(run())
    assert flow.response.status_code == 400
    assert "authorization" not in flow.request.headers


def test_connect_is_refused(configured):
    addon, _ = configured
    flow = tflow.tflow(
        req=tutils.treq(method=b"CONNECT", host="example.com", port=443, path=b"", authority=b"example.com:443")
    )
    addon.http_connect(flow)
    assert flow.response.status_code == 405

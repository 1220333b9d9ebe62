"""End to end: bad input and upstream faults through the real bridge process."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, run_bridge_expecting_failure, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply

UPSTREAM_KEY = "sk-upstream-secret"


def account(name: str, fake: FakeOpenAI, **extra) -> dict:
    return {
        "name": name,
        "provider": "openai",
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "models": ["gpt-test"],
        "requests_per_minute": 1000,
        "max_concurrent": 50,
        **extra,
    }


@pytest.fixture
def fakes():
    with FakeOpenAI() as one, FakeOpenAI() as two:
        yield one, two


@pytest.fixture
def bridge(tmp_path, fakes):
    config = write_config(
        tmp_path / "bridge.toml",
        [account("first", fakes[0]), account("second", fakes[1])],
        record=False,
        strategy="fill-first",
        keepalive_seconds=0.3,
        max_body_bytes=4096,
    )
    with BridgeProcess(tmp_path, config) as process:
        yield process


def post(bridge: BridgeProcess, body: bytes | dict, path: str = "/v1/chat/completions", **headers) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json", **headers}
    return httpx.post(bridge.base_url + path, content=data, headers=headers, timeout=20)


def chat(**extra) -> dict:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_invalid_json_is_400_naming_the_problem(bridge):
    response = post(bridge, b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_wrong_type_names_the_field(bridge):
    response = post(bridge, {"model": "gpt-test", "messages": "hello"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


def test_unsupported_parameter_is_named_not_dropped(bridge):
    response = post(bridge, chat(logit_bias={"50256": -100}))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias"


def test_body_over_limit_is_413(bridge):
    response = post(bridge, chat(messages=[{"role": "user", "content": "x" * 10000}]))
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]["message"]


def test_missing_key_is_401(bridge):
    response = httpx.post(bridge.base_url + "/v1/chat/completions", json=chat(), timeout=10)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]["message"]


@pytest.mark.parametrize("raw_key", ["sk-llmbridge-\u2026".encode(), b"\xff\xfe", b"sk-\x80"])
def test_a_key_with_bytes_outside_ascii_is_401_not_500(bridge, raw_key):
    """A placeholder pasted from the docs (`sk-llmbridge-…`) or stray bytes: a plain 401, in every header."""
    for header in (b"authorization", b"x-api-key"):
        value = b"Bearer " + raw_key if header == b"authorization" else raw_key
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as conn:
            conn.sendall(
                b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + header + b": " + value + b"\r\nconnection: close\r\n\r\n"
            )
            head = conn.recv(65536).split(b"\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 401"), (header, head)


def test_unknown_path_is_json_404_and_never_forwarded(bridge):
    response = httpx.get(bridge.base_url + "/admin", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 404 and "no route" in response.json()["error"]["message"]


def test_failover_to_second_account_before_first_byte(bridge, fakes):
    first, second = fakes
    first.enqueue(
        Reply(
            status=429, error_body={"error": {"message": "busy", "code": "rate_limit"}}, headers={"retry-after": "30"}
        )
    )
    second.enqueue(text_reply("from second"))
    response = post(bridge, chat())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from second"
    # the first account is now cooling: the next request goes straight to the second
    second.enqueue(text_reply("again"))
    assert post(bridge, chat()).json()["choices"][0]["message"]["content"] == "again"
    assert len(first.requests) == 1


def test_bad_request_does_not_burn_through_accounts(bridge, fakes):
    first, second = fakes
    first.enqueue(Reply(status=400, error_body={"error": {"message": "bad tool schema"}}))
    response = post(bridge, chat())
    assert response.status_code == 400 and "bad tool schema" in response.json()["error"]["message"]
    assert len(second.requests) == 0


def test_upstream_unreachable_is_502(tmp_path):
    config = write_config(
        tmp_path / "bridge.toml",
        [
            {
                "name": "dead",
                "provider": "openai",
                "api_key": "k",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["gpt-test"],
            }
        ],
        record=False,
    )
    with BridgeProcess(tmp_path, config) as bridge:
        response = post(bridge, chat())
    assert response.status_code == 502
    assert "cannot reach" in response.json()["error"]["message"]


def test_upstream_silent_past_read_timeout_is_504(tmp_path, fakes):
    config = write_config(
        tmp_path / "bridge.toml", [account("slow", fakes[0])], record=False, upstream_read_timeout=0.5
    )
    fakes[0].enqueue(Reply(header_delay=2.0))
    with BridgeProcess(tmp_path, config) as bridge:
        response = post(bridge, chat())
    assert response.status_code == 504
    assert "did not answer in time" in response.json()["error"]["message"]


def test_upstream_cut_mid_stream_gives_error_event(bridge, fakes):
    fakes[0].enqueue(Reply(deltas=[{"content": "partial "}], cut=True))
    client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(**chat(stream=True)):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial "
    assert "mid-response" in str(info.value) or "ended before" in str(info.value)


def test_keepalive_comments_during_upstream_silence(bridge, fakes):
    fakes[0].enqueue(text_reply("slow", pieces=2, delay=0.8))
    with httpx.stream(
        "POST",
        bridge.base_url + "/v1/chat/completions",
        json=chat(stream=True),
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    ) as response:
        body = b"".join(response.iter_raw())
    assert b": keep-alive" in body and body.endswith(b"data: [DONE]\n\n")


def test_client_disconnect_closes_upstream_and_next_request_works(bridge, fakes):
    fakes[0].enqueue(Reply(deltas=[{"content": f"{i} "} for i in range(200)], delay=0.05))
    with httpx.stream(
        "POST",
        bridge.base_url + "/v1/chat/completions",
        json=chat(stream=True),
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    ) as response:
        for line in response.iter_lines():
            if '"1 "' in line:
                break  # leave after the second token
    deadline = time.time() + 8
    while fakes[0].disconnects == 0 and time.time() < deadline:
        time.sleep(0.1)
    assert fakes[0].disconnects == 1, bridge.output()
    fakes[0].enqueue(text_reply("still fine"))
    assert post(bridge, chat()).json()["choices"][0]["message"]["content"] == "still fine"


def test_console_never_shows_keys(bridge, fakes):
    fakes[0].enqueue(text_reply("ok"))
    post(bridge, chat())
    httpx.get(bridge.base_url + f"/v1/models?key={CLIENT_KEY}")
    time.sleep(0.3)
    output = bridge.output()
    assert "gpt-test" in output  # the exchange line is there
    assert CLIENT_KEY not in output and UPSTREAM_KEY not in output


def test_invalid_config_stops_startup_with_one_line(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text('api_keys = ["k"]\nretention = 3\n')
    code, output = run_bridge_expecting_failure(tmp_path, config)
    assert code != 0
    assert "unknown setting 'retention'" in output


def test_unknown_provider_stops_startup(tmp_path):
    config = write_config(tmp_path / "bridge.toml", [{"name": "x", "provider": "nosuch"}])
    code, output = run_bridge_expecting_failure(tmp_path, config)
    assert code != 0 and "unknown provider 'nosuch'" in output


def test_missing_credentials_file_stops_startup(tmp_path):
    config = write_config(
        tmp_path / "bridge.toml",
        [{"name": "g", "provider": "gemini-cli", "credentials": str(tmp_path / "missing.json")}],
    )
    code, output = run_bridge_expecting_failure(tmp_path, config)
    assert code != 0 and "missing.json" in output and "not found" in output


def test_no_config_generates_key_and_explains_accounts(tmp_path):
    with BridgeProcess(tmp_path, None) as bridge:
        output = bridge.output()
        key = (bridge.home / "client_key").read_text().strip()
        assert key in output and "Accounts:  none" in output
        assert (bridge.home / "client_key").stat().st_mode & 0o777 == 0o600
        response = httpx.get(bridge.base_url + "/v1/models", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200 and response.json()["data"] == []
        assert "127.0.0.1" in output


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    found.add(address)
    return found


def test_listens_only_on_loopback_in_reverse_mode(bridge):
    assert listening_addresses(bridge.port) == {"0100007F"}  # 127.0.0.1, nothing else
    assert f"reverse proxy to http://127.0.0.1:9 listening at 127.0.0.1:{bridge.port}" in bridge.output()


def test_client_leaving_is_noticed_while_the_upstream_is_silent(bridge, fakes):
    fakes[0].enqueue(Reply(deltas=[{"content": "first "}, {"content": "late"}], delay=4.0))
    with httpx.stream(
        "POST",
        bridge.base_url + "/v1/chat/completions",
        json=chat(stream=True),
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=20,
    ) as response:
        for line in response.iter_lines():
            if '"first "' in line:
                break
    left = time.time()
    while "client disconnected" not in bridge.output() and time.time() - left < 3.5:
        time.sleep(0.05)
    assert "client disconnected" in bridge.output()
    assert time.time() - left < 3.0  # well before the upstream's next chunk (4 s)

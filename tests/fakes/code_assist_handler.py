"""HTTP plumbing of the fake Code Assist server: routing, auth, JSON and SSE writing."""

from __future__ import annotations

import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.code_assist_rules import LIST_EXPERIMENTS, RETRIEVE_USER_QUOTA, Rejected, known

if TYPE_CHECKING:
    from tests.fakes.code_assist import FakeCodeAssist, Reply

PREFIX = "/v1internal"
LOAD_FIELDS = {"cloudaicompanionProject", "metadata", "mode"}
ONBOARD_FIELDS = {"tierId", "cloudaicompanionProject", "metadata"}
METADATA_FIELDS = {"ideType", "platform", "pluginType", "duetProject", "ideVersion", "ideName", "updateChannel"}


def make_handler(fake: FakeCodeAssist) -> type[BaseHTTPRequestHandler]:
    from tests.fakes.code_assist import UNAUTHENTICATED, envelope, merged, rpc_error

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            self._record("GET", None)
            if not fake.authorized(self._headers()):
                return self._json(401, rpc_error(401, UNAUTHENTICATED, "UNAUTHENTICATED"))
            if not path.startswith(PREFIX + "/operations/"):
                return self._json(404, rpc_error(404, "Not found", "NOT_FOUND"))
            operation = fake.operation(path.removeprefix(PREFIX + "/"))
            if not operation:
                return self._json(404, rpc_error(404, "Operation not found", "NOT_FOUND"))
            self._json(200, operation)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            path = urlsplit(self.path).path
            if path == "/token":
                form = dict(parse_qsl(raw.decode()))
                self._record("POST", form)
                return self._json(*fake.token(form))
            try:
                body = json.loads(raw)
            except ValueError:
                self._record("POST", raw)
                return self._json(400, rpc_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT"))
            self._record("POST", body)
            if self._headers().get("content-type", "").split(";")[0] != "application/json":
                message = "Content-Type must be application/json"
                return self._json(400, rpc_error(400, message, "INVALID_ARGUMENT"))
            if not fake.authorized(self._headers()):
                return self._json(401, rpc_error(401, UNAUTHENTICATED, "UNAUTHENTICATED"))
            self._route(path.removeprefix(PREFIX), body)

        def _route(self, method: str, body: Any) -> None:
            if method == ":loadCodeAssist":
                return self._setup(body, LOAD_FIELDS, fake.load_code_assist)
            if method == ":onboardUser":
                return self._setup(body, ONBOARD_FIELDS, fake.onboard)
            if method == ":retrieveUserQuota":
                return self._checked(body, RETRIEVE_USER_QUOTA, "", fake.retrieve_user_quota)
            if method == ":listExperiments":
                return self._checked(body, LIST_EXPERIMENTS, "metadata", fake.list_experiments)
            if method == ":countTokens":
                return self._json(*fake.count_tokens(body))
            if method in (":streamGenerateContent", ":generateContent"):
                return self._generate(body, stream=method == ":streamGenerateContent")
            self._json(404, rpc_error(404, f"Method not found: {method}", "NOT_FOUND"))

        def _setup(self, body: Any, fields: set[str], answer: Any) -> None:
            try:
                known(known(body, fields, "").get("metadata", {}), METADATA_FIELDS, "metadata")
            except Rejected as e:
                return self._json(e.status, rpc_error(e.status, e.message, e.google_status))
            self._json(*answer(body))

        def _checked(self, body: Any, fields: set[str], metadata: str, answer: Any) -> None:
            try:
                known(body, fields, "")
                if metadata:
                    known(body.get(metadata, {}), METADATA_FIELDS, metadata)
                if body.get("project") != fake.project:
                    raise Rejected(
                        403, "PERMISSION_DENIED", f"Permission denied on resource project {body.get('project')}."
                    )
            except Rejected as e:
                return self._json(e.status, rpc_error(e.status, e.message, e.google_status))
            self._json(*answer(body))

        def _generate(self, body: Any, stream: bool) -> None:
            if stream and dict(parse_qsl(urlsplit(self.path).query)).get("alt") != "sse":
                return self._json(400, rpc_error(400, "fake: streaming needs ?alt=sse", "INVALID_ARGUMENT"))
            problem = fake.check_generate(body)
            if problem:
                fake.rejections.append(problem[1]["error"]["message"])
                return self._json(*problem)
            reply = fake.next_reply(body)
            if reply.status != 200:
                return self._json(reply.status, reply.body, reply.headers)
            fake.issue(reply)
            trace = f"{int(time.time() * 1000):x}{fake._next():06x}"
            if not stream:
                return self._json(200, merged(reply, body["model"], trace))
            self._stream(reply, body["model"], trace)

        def _stream(self, reply: Reply, model: str, trace: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for chunk in reply.chunks:
                    time.sleep(reply.delay)
                    self._chunk(b"data: " + envelope(chunk, model, trace) + b"\r\n\r\n")
                if reply.abort:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def _record(self, method: str, body: Any) -> None:
            from tests.fakes.code_assist import Recorded

            with fake.lock:
                fake.requests.append(Recorded(method, self.path, self._headers(), body))

        def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=UTF-8")
            self.send_header("content-length", str(len(data)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler

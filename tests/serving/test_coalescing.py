"""The server's HTTP protocol (serving.http): one write per answer, and on the wire exactly what uvicorn's own
httptools protocol sends, whatever the response (HEAD, 100 Continue, a stream that waits, Connection: close)."""

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from serving.http import CoalescingHttpToolsProtocol, CoalescingTransport
from serving.process import free_port


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEADERS = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


def test_a_header_block_leaves_with_the_body_in_one_write() -> None:
    async def run() -> list[bytes]:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEADERS)
        assert inner.writes == []  # held
        transport.write(b"hello")
        await asyncio.sleep(0)  # the turn ends: nothing more is written
        return inner.writes

    assert asyncio.run(run()) == [HEADERS + b"hello"]


def test_a_header_block_without_a_body_is_written_when_the_loops_turn_ends() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEADERS)
        before = list(inner.writes)
        await asyncio.sleep(0)
        return before, inner.writes

    before, after = asyncio.run(run())
    assert before == [] and after == [HEADERS]


def test_100_continue_bodies_and_closing_are_not_held() -> None:
    async def run() -> RecordingTransport:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport.write(b"a body chunk")
        transport.write(HEADERS)
        transport.close()  # whatever is held goes first
        return inner

    inner = asyncio.run(run())
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"a body chunk", HEADERS] and inner.closed


async def _app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":  # a chunked answer whose body comes later
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + body
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


@contextmanager
def _server(http: object) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, http=http, log_level="warning",  # type: ignore[arg-type]
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _exchange(port: int, requests: list[bytes], expect_100: bool = False) -> bytes:
    """Send ``requests`` on one connection and read until the server closes it; the date header is blanked."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for request in requests:
            if expect_100:
                head, body = request.split(b"\r\n\r\n", 1)
                sock.sendall(head + b"\r\n\r\n")
                assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body is read
                sock.sendall(body)
            else:
                sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return re.sub(rb"date: [^\r]+", b"date: -", received)


CONVERSATIONS = {
    "keep-alive GET and POST, then close": [
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
        b"HEAD /c HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
    "pipelined": [b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
}


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_the_wire_is_what_uvicorns_own_protocol_sends(name: str) -> None:
    with _server("httptools") as port:
        expected = _exchange(port, CONVERSATIONS[name])
    with _server(CoalescingHttpToolsProtocol) as port:
        assert _exchange(port, CONVERSATIONS[name]) == expected
    assert expected.count(b"HTTP/1.1 200 OK") == (4 if name.startswith("keep") else 2)


def test_100_continue_is_sent_before_the_body_is_read() -> None:
    request = b"POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
    with _server(CoalescingHttpToolsProtocol) as port:
        assert _exchange(port, [request], expect_100=True).endswith(b"\r\n\r\necho:hi")

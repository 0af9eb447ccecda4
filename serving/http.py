"""The HTTP protocol the server runs: uvicorn's httptools protocol, with each response's status line and headers
sent together with its body.

uvicorn writes a response in two calls, the header block and then the body; with ``TCP_NODELAY`` (uvloop's default)
each call is a ``send`` of its own: two packets per answer, and on loopback or a fast network the second send costs
as much as the first (the kernel's whole transmit path, the peer woken twice). :class:`CoalescingTransport` holds a
header block until the next write, which it joins, so an answer leaves in one packet; a block that no write follows
in the same turn of the event loop (``HEAD``, a stream that waits) is sent at the end of that turn. What the client
receives is byte for byte the same, in the same order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that holds a header block (``HTTP/1.x ... \\r\\n\\r\\n``) until the next write or the end of the
    event loop's turn; everything else is the wrapped transport's, after what it holds is written."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)  # a copy of a few KB costs far less than a second send
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n" and data[9:10] != b"1":  # not 100 Continue
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:
        # close, is_closing, pause_reading, get_extra_info ...: whatever is held goes first
        self.flush()
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport` (pass it as uvicorn's ``http``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

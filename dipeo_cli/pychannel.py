"""The runner's end of a python worker's protocol socket (the protocol is in
dipeo_cli.pyserve): one request at a time, each reply a length-prefixed message.

An asyncio protocol rather than asyncio streams: a round trip is most of a small job's cost,
and the streams' layers were a third of it. A buffered protocol, reading into a buffer it
keeps: a plain protocol's transport allocates 256 KiB for every read (a fresh mapping, beyond
malloc's threshold), which cost more than everything else about reading a small reply.
"""

from __future__ import annotations

import asyncio
import socket
import time

from dipeo_cli.pyserve import HEADER

# The read buffer, one per worker (a hundred workers: 800 KiB): most replies fit, a larger one
# grows it for its time.
READ_SIZE = 8 * 1024


class Channel(asyncio.BufferedProtocol):
    """`sock` is the socket the transport reads (for `ask(awake=...)`)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock
        self.answered_awake = False  # the last reply came while `ask` polled for it
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray(READ_SIZE)
        self._filled = 0
        self._reply: asyncio.Future[bytearray] | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled == len(self._buffer):  # a reply larger than the buffer: make room
            size = 2 * len(self._buffer)
            if self._filled >= HEADER.size:
                size = max(size, HEADER.size + HEADER.unpack_from(self._buffer)[0])
            # a new buffer, not a resize: the transport may still hold a view of this one
            larger = bytearray(size)
            larger[: self._filled] = self._buffer
            self._buffer = larger
        return memoryview(self._buffer)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled < HEADER.size:
            return
        end = HEADER.size + HEADER.unpack_from(self._buffer)[0]
        if self._filled < end or self._reply is None or self._reply.done():
            return
        self._reply.set_result(self._buffer[HEADER.size : end])  # a copy
        rest = self._filled - end
        if len(self._buffer) > READ_SIZE:  # do not keep a large reply's memory
            kept = bytearray(max(READ_SIZE, rest))
            kept[:rest] = self._buffer[end : self._filled]
            self._buffer = kept
        elif rest:
            self._buffer[:rest] = self._buffer[end : self._filled]
        self._filled = rest

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(ConnectionError("the python worker closed its socket"))

    async def ask(self, message: bytes, awake: float = 0.0) -> bytearray:
        """Send one request and wait for its reply; ConnectionError when the worker is gone.

        `awake`: seconds to first poll the socket for the reply without yielding to the event
        loop, for a reply expected within microseconds (a small job, its worker awake on
        another CPU): that spares this process a sleep and a wake-up, which cost more than the
        job. `answered_awake` then says whether the reply came in that time."""
        if self._lost or self._transport is None or self._transport.is_closing():
            raise ConnectionError("the python worker closed its socket")
        reply = self._reply = asyncio.get_running_loop().create_future()
        self._transport.write(message)
        self.answered_awake = False
        if awake and self._sock is not None and not self._transport.get_write_buffer_size():
            self._poll_reply(self._sock, time.perf_counter() + awake)
            self.answered_awake = reply.done()
        try:
            return await self._reply
        finally:
            self._reply = None

    def _poll_reply(self, sock: socket.socket, deadline: float) -> None:
        # What the transport does when the loop sees the socket readable, done here instead
        # (a read on the non-blocking socket the transport also reads: it keeps no read state).
        while not self._reply_done():
            try:
                nbytes = sock.recv_into(self.get_buffer(-1))
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    return
                continue
            except OSError:  # the transport sees it too, and reports it
                return
            if not nbytes:  # EOF: left for the transport, which reads it again
                return
            self.buffer_updated(nbytes)

    def _reply_done(self) -> bool:
        return self._reply is None or self._reply.done()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

"""The two ends of the python worker protocol: the runner's (dipeo_cli.pychannel), fed by hand
and by real workers, and the worker's reading of jobs (dipeo_cli.pyserve.serve)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest

from dipeo_cli.pychannel import READ_SIZE, Channel
from dipeo_cli.pyserve import HEADER
from tests.test_pyworker import job, with_pool


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def _feed(channel: Channel, data: bytes, piece: int) -> None:
    """What the event loop does: read into the buffer the channel lends, piece by piece."""
    while data:
        buffer = channel.get_buffer(-1)
        assert len(buffer) > 0
        n = min(piece, len(buffer), len(data))
        buffer[:n] = data[:n]
        channel.buffer_updated(n)
        data = data[n:]


def _message(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 1000, READ_SIZE * 4])
def test_a_reply_arrives_whole_whatever_pieces_it_is_read_in(piece: int) -> None:
    small = json.dumps({"ok": True, "result": 1}).encode()
    large = json.dumps({"ok": True, "result": "x" * (3 * READ_SIZE)}).encode()

    async def body() -> None:
        channel = Channel()
        transport = _Transport()
        channel.connection_made(transport)
        for payload in (small, large, small, large):
            asking = asyncio.ensure_future(channel.ask(b"job"))
            await asyncio.sleep(0)
            _feed(channel, _message(payload), piece)
            assert bytes(await asking) == payload
        assert transport.sent == [b"job"] * 4

    asyncio.run(body())


def test_the_read_buffer_is_kept_between_replies_and_a_large_one_is_given_back() -> None:
    async def body() -> None:
        channel = Channel()
        channel.connection_made(_Transport())
        first = channel.get_buffer(-1).obj
        for payload in (b"{}", b"[1]"):
            asking = asyncio.ensure_future(channel.ask(b"job"))
            await asyncio.sleep(0)
            _feed(channel, _message(payload), 100)
            assert bytes(await asking) == payload
            assert channel.get_buffer(-1).obj is first  # no buffer allocated per read
        asking = asyncio.ensure_future(channel.ask(b"job"))
        await asyncio.sleep(0)
        _feed(channel, _message(b"[" + b"1," * READ_SIZE + b"1]"), READ_SIZE)
        assert len(await asking) == 2 * READ_SIZE + 3
        assert len(channel.get_buffer(-1)) == READ_SIZE  # not the large reply's size

    asyncio.run(body())


def test_a_closed_socket_fails_the_waiting_request() -> None:
    async def body() -> None:
        channel = Channel()
        channel.connection_made(_Transport())
        asking = asyncio.ensure_future(channel.ask(b"job"))
        await asyncio.sleep(0)
        _feed(channel, HEADER.pack(10) + b"{", 100)  # half a reply, then the worker died
        channel.connection_lost(None)
        with pytest.raises(ConnectionError):
            await asking
        with pytest.raises(ConnectionError):
            await channel.ask(b"job")

    asyncio.run(body())


def test_large_and_small_results_alternate_through_a_real_worker() -> None:
    async def body(pool: Any) -> list[int]:
        sizes = []
        for n in (5_000_000, 1, 200_000, 2):
            reply = await pool.run(job("result = 'y' * n", inputs={"n": n}))
            sizes.append(len(reply["result"]))
        return sizes

    assert with_pool(body) == [5_000_000, 1, 200_000, 2]


def test_a_job_is_read_whole_however_it_was_split_and_a_large_one_too() -> None:
    from dipeo_cli import pyserve

    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=pyserve.serve, args=(theirs.fileno(), theirs.fileno()))
    thread.start()
    try:
        for text, pieces in (("small", [1, 2, 1]), ("z" * 3_000_000, [3, 100_000])):
            payload = _message(json.dumps(job("result = len(s)", inputs={"s": text})).encode())
            for size in pieces:  # the header and the body split anywhere
                ours.sendall(payload[:size])
                payload = payload[size:]
                time.sleep(0.01)
            ours.sendall(payload)
            size = HEADER.unpack(ours.recv(HEADER.size, socket.MSG_WAITALL))[0]
            assert json.loads(ours.recv(size, socket.MSG_WAITALL))["result"] == len(text)
    finally:
        ours.close()
        thread.join()
        theirs.close()


async def _channel_on(ours: socket.socket) -> Channel:
    loop = asyncio.get_running_loop()
    _, channel = await loop.create_connection(lambda: Channel(ours), sock=ours)
    return channel


def _answer(peer: socket.socket, payload: bytes, delay: float = 0.0) -> threading.Thread:
    """A peer that reads one request and answers `payload` after `delay` seconds."""

    def run() -> None:
        peer.recv(65536)
        time.sleep(delay)
        peer.sendall(_message(payload))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("size", [10, 3 * READ_SIZE])
def test_a_reply_that_comes_while_the_channel_polls_is_read_there(size: int) -> None:
    payload = b"[" + b"1" * size + b"]"

    async def body() -> None:
        ours, peer = socket.socketpair()
        channel = await _channel_on(ours)
        try:
            answering = _answer(peer, payload)
            assert bytes(await channel.ask(b"job", awake=30.0)) == payload  # ends at the reply
            assert channel.answered_awake
            answering.join()
        finally:
            channel.close()
            peer.close()

    asyncio.run(body())


def test_a_reply_that_comes_after_the_poll_is_awaited_on_the_event_loop() -> None:
    async def body() -> None:
        ours, peer = socket.socketpair()
        channel = await _channel_on(ours)
        try:
            answering = _answer(peer, b"{}", delay=0.2)
            assert bytes(await channel.ask(b"job", awake=0.001)) == b"{}"
            assert not channel.answered_awake
            answering.join()
        finally:
            channel.close()
            peer.close()

    asyncio.run(body())


def test_a_worker_gone_while_the_channel_polls_fails_the_request() -> None:
    async def body() -> None:
        ours, peer = socket.socketpair()
        channel = await _channel_on(ours)

        def close_after_reading() -> None:
            peer.recv(65536)
            peer.sendall(HEADER.pack(100) + b"{")  # half a reply, then gone
            peer.close()

        thread = threading.Thread(target=close_after_reading)
        thread.start()
        try:
            with pytest.raises(ConnectionError):
                await channel.ask(b"job", awake=30.0)
        finally:
            thread.join()
            channel.close()

    asyncio.run(body())

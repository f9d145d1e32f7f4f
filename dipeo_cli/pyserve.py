"""The loop of a python worker (dipeo_cli.pyworker runs each job): it reads jobs from the
runner and writes replies, one at a time, and between a chain's jobs it waits awake.

Each message is a 4-byte big-endian length, then UTF-8 JSON:

    job:   {"code" | "file_path", "function_name", "inputs", "variables", "cwd", "filename",
            "shown" (how messages name the file), "linger" (microseconds, see `serve`)}
    reply: {"ok": true, "result", "converted", "stdout", "stderr"}
         | {"ok": false, "error": "ExcType: message (line N: source)", "stdout", "stderr"}

The runner's end is dipeo_cli.pychannel, driven by dipeo_cli.pypool.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

from dipeo_cli.pyworker import run_job
from dipeo_cli.spare_cpu import Backoff, open_loadavg, runnable_tasks, usable_cpus

HEADER = struct.Struct(">I")  # each message: its length, then UTF-8 JSON


def serve(proto_in: int, proto_out: int, load: int | None = None, cpus: int = 0) -> None:
    """Answer jobs read from `proto_in` on `proto_out`, one at a time, until EOF. `load` is a
    /proc/loadavg descriptor (spare_cpu.open_loadavg; opened here when None) and `cpus` the
    CPUs this process may use (counted here when 0): a forked worker inherits both.

    A job may ask the worker to linger (`"linger"`: microseconds): after its reply, the worker
    waits awake for the next job for up to that long, if the previous job came that soon after
    the reply before it (it is in a chain). Waking a process that sleeps costs the runner more
    than the job itself on a virtual machine; lingering turns a chain's round trips into
    hand-offs between two running processes. Then it sleeps, so an idle worker burns nothing."""
    clock = time.perf_counter
    poller = select.poll()
    poller.register(proto_in, select.POLLIN)
    if load is None:
        load = open_loadavg()
    cpus = cpus or usable_cpus()
    replied = -1.0  # when the last reply went out
    linger = 0.0  # how long to wait awake for the next job
    # A wait that ends without a job (the chain ended, it is slower than the wait, or the
    # machine is busy: a load that comes and goes) sleeps through the next 2, 4, ... 64 waits.
    backoff = Backoff()
    try:
        while True:
            if linger and not backoff.skip():
                backoff.paid(_wait_awake(poller, clock() + linger, clock, cpus, load))
            body = _read_message(proto_in)
            if body is None:
                break
            gap = clock() - replied
            job = json.loads(body)
            asked = job.get("linger")
            data = _encode_reply(run_job(job))
            _write_all(proto_out, HEADER.pack(len(data)) + data)
            replied = clock()
            linger = linger_seconds(asked, gap)
    finally:
        if load >= 0:
            os.close(load)


def linger_seconds(asked_us: Any, gap: float) -> float:
    """Seconds to wait awake for the next job: what the runner asked (0 when others run in
    parallel), only if this job came within that time of the previous reply."""
    if not asked_us or not isinstance(asked_us, int):
        return 0.0
    asked = min(asked_us, _LINGER_CAP_US) / 1e6
    return asked if gap <= asked else 0.0


_LINGER_CAP_US = 2000  # whatever a job asks, never more than 2 ms awake per reply


def _wait_awake(poller: Any, deadline: float, clock: Any, cpus: int, load: int) -> bool:
    """Poll for the next job until `deadline`, but only while a CPU is spare: as soon as more
    tasks are runnable than there are CPUs (the runner, other workers, other programs), a
    waiting worker would take a CPU from one of them, so it goes to sleep instead. True when
    the job (or EOF) came meanwhile."""
    spins = 0
    while not poller.poll(0):  # data, EOF or an error: the read that follows sees which
        if clock() >= deadline:
            return False
        if not spins & 7 and runnable_tasks(load) > cpus:  # also when loadavg is unreadable
            return False
        spins += 1
    return True


_REPLY_ENCODER = json.JSONEncoder(ensure_ascii=False)  # json.dumps's, built once


def _encode_reply(reply: dict[str, Any]) -> bytes:
    try:
        return _REPLY_ENCODER.encode(reply).encode("utf-8")
    except (TypeError, ValueError):
        pass
    # The result holds something JSON cannot: convert those leaves with str().
    from dipeo_cli.values import to_json_safe

    reply["result"], reply["converted"] = to_json_safe(reply.get("result"))
    try:
        return _REPLY_ENCODER.encode(reply).encode("utf-8")
    except (TypeError, ValueError) as exc:  # e.g. lone surrogates in a string
        reply = {**reply, "ok": False, "result": None, "error": f"the result cannot be sent: {exc}"}
        return json.dumps(reply, ensure_ascii=True).encode("utf-8")


def _read_message(fd: int) -> bytes | None:
    """The next message's body, None at EOF between messages. One read, usually: the runner
    sends a message only once the previous one is answered, so nothing follows it."""
    data = os.read(fd, _READ_SIZE)
    if not data:
        return None
    if len(data) < HEADER.size:
        data += _read_more(fd, HEADER.size - len(data))
    end = HEADER.size + HEADER.unpack_from(data)[0]
    if len(data) < end:
        data += _read_more(fd, end - len(data))
    elif len(data) > end:
        raise EOFError("the runner sent a message before the previous one was answered")
    return data[HEADER.size :]


def _read_more(fd: int, size: int) -> bytes:
    """The rest of a message begun: exactly `size` more bytes."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise EOFError("the runner closed the socket in the middle of a message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


_READ_SIZE = 64 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]

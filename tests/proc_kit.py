"""Finding processes by their command line in /proc, for the tests of processes that must die
with their run (test_processes.py, test_e2e_processes.py)."""

from __future__ import annotations

import os
from pathlib import Path


def processes_with(text: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `text`."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry))
    return found

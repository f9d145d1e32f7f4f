"""Unified diffs, in memory: `parse_diff` reads a diff into its file sections and hunks,
`apply_hunks` applies one file's hunks to its lines. Nothing here touches a file; diff_patch
(dipeo_cli/handlers/diff_patch.py) decides which files to patch and writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HUNK_HEADER = re.compile(r"^@@+ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@+(.*)$")

# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class PatchError(ValueError):
    """A diff that cannot be parsed."""


@dataclass
class HunkLine:
    kind: str  # " ", "-" or "+"
    text: str  # without its line ending
    no_eol: bool = False  # followed by "\ No newline at end of file"


@dataclass
class Hunk:
    number: int  # 1-based within its file
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    header: str
    lines: list[HunkLine] = field(default_factory=list)

    def reversed(self) -> Hunk:
        swap = {" ": " ", "-": "+", "+": "-"}
        return Hunk(
            self.number,
            self.new_start,
            self.new_count,
            self.old_start,
            self.old_count,
            f"@@ -{self.new_start},{self.new_count} +{self.old_start},{self.old_count} @@",
            [HunkLine(swap[line.kind], line.text, line.no_eol) for line in self.lines],
        )

    def text(self) -> str:
        out = [self.header + "\n"]
        for line in self.lines:
            out.append(f"{line.kind}{line.text}\n")
            if line.no_eol:
                out.append("\\ No newline at end of file\n")
        return "".join(out)


@dataclass
class FilePatch:
    old_path: str | None  # as written in the header (None when there was no header)
    new_path: str | None
    hunks: list[Hunk] = field(default_factory=list)

    def reversed(self) -> FilePatch:
        return FilePatch(self.new_path, self.old_path, [h.reversed() for h in self.hunks])


def _header_path(line: str) -> str:
    path = line[4:].rstrip("\r\n")
    if "\t" in path:  # "--- a/x.py\t2024-01-01 12:00:00"
        path = path.split("\t", 1)[0]
    path = path.strip()
    if len(path) >= 2 and path[0] == path[-1] == '"':
        path = path[1:-1]
    return path


def parse_diff(text: str) -> list[FilePatch]:
    """The file sections of a unified diff. Text around them (git's `diff --git`, `index`, mail
    headers) is ignored; a diff without `---`/`+++` headers is one section with no paths."""
    lines = text.splitlines()
    patches: list[FilePatch] = []
    current: FilePatch | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FilePatch(_header_path(line), _header_path(lines[i + 1]))
            patches.append(current)
            i += 2
            continue
        match = _HUNK_HEADER.match(line)
        if match is None:
            i += 1
            continue
        if current is None:
            current = FilePatch(None, None)
            patches.append(current)
        old_start, old_count, new_start, new_count = (
            int(match.group(1)),
            int(match.group(2)) if match.group(2) is not None else 1,
            int(match.group(3)),
            int(match.group(4)) if match.group(4) is not None else 1,
        )
        hunk = Hunk(
            len(current.hunks) + 1,
            old_start,
            old_count,
            new_start,
            new_count,
            line.split(" @@")[0] + " @@" if " @@" in line else line,
        )
        i += 1
        old_left, new_left = old_count, new_count
        while old_left > 0 or new_left > 0:
            if i >= len(lines):
                raise PatchError(f"hunk {hunk.number} ({hunk.header}) ends early")
            body = lines[i]
            kind, rest = (body[:1], body[1:]) if body else (" ", "")  # a blank line: empty context
            if kind == "\\":
                if hunk.lines:
                    hunk.lines[-1].no_eol = True
                i += 1
                continue
            if kind not in (" ", "-", "+"):
                raise PatchError(
                    f"hunk {hunk.number} ({hunk.header}): unexpected line {body[:60]!r}"
                )
            if kind in (" ", "-"):
                old_left -= 1
            if kind in (" ", "+"):
                new_left -= 1
            if old_left < 0 or new_left < 0:
                raise PatchError(
                    f"hunk {hunk.number} ({hunk.header}) has more lines than its header counts"
                )
            hunk.lines.append(HunkLine(kind, rest.rstrip("\r")))
            i += 1
        if i < len(lines) and lines[i].startswith("\\"):
            hunk.lines[-1].no_eol = True
            i += 1
        current.hunks.append(hunk)
    patches = [p for p in patches if p.hunks]  # mode changes, binary files: nothing to apply
    if not patches:
        raise PatchError("no hunks (@@ -a,b +c,d @@) found")
    return patches


# ---------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------


@dataclass
class Applied:
    lines: list[str]
    applied: int
    rejected: list[tuple[Hunk, str]]


def _norm(text: str, ignore_whitespace: bool) -> str:
    text = text.rstrip("\r\n")
    return " ".join(text.split()) if ignore_whitespace else text


def _newline_of(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _matches(lines: list[str], at: int, expected: list[str], ignore_whitespace: bool) -> bool:
    if at < 0 or at + len(expected) > len(lines):
        return False
    return all(_norm(lines[at + k], ignore_whitespace) == expected[k] for k in range(len(expected)))


def _why(
    lines: list[str], at: int, expected: list[str], new: list[str], ignore_whitespace: bool
) -> str:
    if new and _matches(lines, at, new, ignore_whitespace) and new != expected:
        return "it is already applied (apply_mode: reverse undoes it)"
    if at + len(expected) > len(lines):
        return (
            f"the file has {len(lines)} line(s), the hunk needs lines {at + 1}-{at + len(expected)}"
        )
    for k, want in enumerate(expected):
        got = _norm(lines[at + k], ignore_whitespace)
        if got != want:
            return f"line {at + k + 1} is {_clip(got)}, the diff expects {_clip(want)}"
    return "its context does not match"  # pragma: no cover - only when `at` is out of range


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def apply_hunks(
    original: list[str],
    hunks: list[Hunk],
    *,
    fuzz: int,
    ignore_whitespace: bool,
    force: bool,
) -> Applied:
    """Apply hunks in order to `original` (lines with their endings). Hunks that do not apply
    come back in `rejected` with the reason (without `force`, the first one stops the work);
    the caller decides what that means."""
    out: list[str] = []
    pos = 0  # lines of `original` consumed into `out`
    offset = 0  # where earlier hunks were found, relative to their headers
    newline = _newline_of(original)
    applied = 0
    rejected: list[tuple[Hunk, str]] = []
    for hunk in hunks:
        old = [_norm(h.text, ignore_whitespace) for h in hunk.lines if h.kind in (" ", "-")]
        new = [_norm(h.text, ignore_whitespace) for h in hunk.lines if h.kind in (" ", "+")]
        # A hunk that only adds lines (old count 0) inserts after line old_start.
        expected = (hunk.old_start if hunk.old_count == 0 else hunk.old_start - 1) + offset
        found = None
        for delta in sorted(range(-fuzz, fuzz + 1), key=abs):
            at = expected + delta
            if at >= pos and _matches(original, at, old, ignore_whitespace):
                found = at
                break
        if found is None:
            rejected.append((hunk, _why(original, max(expected, pos), old, new, ignore_whitespace)))
            if not force:
                break
            continue
        out.extend(original[pos:found])
        k = found
        for h in hunk.lines:
            if h.kind == " ":
                out.append(original[k])
                k += 1
            elif h.kind == "-":
                k += 1
            else:
                out.append(h.text + ("" if h.no_eol else newline))
        pos = k
        offset = found - (hunk.old_start - 1 if hunk.old_count else hunk.old_start)
        applied += 1
    out.extend(original[pos:])
    _mend_newlines(out)
    return Applied(out, applied, rejected)


def _mend_newlines(lines: list[str]) -> None:
    """Only the last line may lack a newline. A hunk that appends after an old last line
    without one (written by hand with that line as context; diff itself writes `-last`,
    `\\ No newline at end of file`, `+last`) leaves such a line in the middle: end it."""
    newline = _newline_of(lines)
    for index in range(len(lines) - 1):
        if not lines[index].endswith(("\n", "\r")):
            lines[index] += newline

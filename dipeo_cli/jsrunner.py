"""Run code_job's javascript and typescript code in a JS runtime found on PATH.

    runtime = find_runtime("typescript", base_dir)   # None: nothing can run it
    reply = await run_js(runtime, job, cwd=base_dir)

Runtimes, in order of preference: typescript -> tsx, deno, bun, then node when it can strip
types itself (>= 22.6); javascript -> node, deno, bun. `<base>/node_modules/.bin` is searched
after PATH, so a project-local `npm install tsx` counts.

Each job runs in a new process, as a job of dipeo_cli.processes: a timeout or a cancellation
kills every process it started, and background processes still holding its output when it exits
are killed then. Its temporary directory is in the dipeo process's folder, which is removed
even when dipeo is killed. The job (inputs, variables, ...) goes to the process as JSON on stdin;
the reply comes back in a file of the job's temporary directory, so whatever the code prints
(console.log) stays out of it and is returned as `stdout`.

Inline code runs as the body of an async function:

- each input whose label is a JavaScript identifier is a `const` of that name, and `inputs`
  (all of them) and `variables` are there too; the code may shadow them (`const data = ...`);
- the output is what a top-level `return` returns, else `function_name(inputs)` (awaited) when
  the code defines that function, else the variable `result` (declared or not);
- single-line static `import` statements are moved to the top of the module, and `require`
  resolves from the base directory.

Inline code that has a top-level `export` is a module (as DiPeO's typescript wrapper expected),
like a `file_path`: it is imported and its exported `function_name` is called with the inputs
(awaited); a module without that function but with an exported `result` gives that.

    reply: {"ok": true, "result", "converted", "stdout", "stderr", "exit_code"}
         | {"ok": false, "error": "TypeError: message (line N: source)", "stdout", ...}
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dipeo_cli.processes import clip, exit_message, run_process, temp_dir

LANGUAGES = {
    "typescript": "typescript",
    "ts": "typescript",
    "javascript": "javascript",
    "js": "javascript",
}
_PREFERENCE = {"typescript": ("tsx", "deno", "bun", "node"), "javascript": ("node", "deno", "bun")}
_NODE_STRIPS_TYPES = (22, 6, 0)  # --experimental-strip-types
_NODE_STRIPS_BY_DEFAULT = (23, 6, 0)

_RESERVED = frozenset(
    """break case catch class const continue debugger default delete do else enum export extends
    false finally for function if import in instanceof new null return super switch this throw
    true try typeof var void while with yield let static implements interface package private
    protected public await arguments eval undefined NaN Infinity inputs variables result
    require""".split()
)
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_STATIC_IMPORT = re.compile(r"""^\s*import\s+(?:[\w*{}\s,$]+\s+from\s+)?["'][^"']+["']\s*;?\s*$""")
_TOP_LEVEL_EXPORT = re.compile(r"^export\s", re.MULTILINE)


@dataclass(frozen=True)
class Runtime:
    """A JS runtime: `name` (tsx, deno, bun or node), its executable, and the arguments that
    go before the script."""

    name: str
    path: str
    args: tuple[str, ...] = ()
    version: str | None = None

    def argv(self, script: str) -> list[str]:
        return [self.path, *self.args, script]


def is_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.match(name)) and name not in _RESERVED


def find_runtime(language: str, base_dir: Path | None = None) -> Runtime | None:
    """The runtime that will run `language` code (typescript or javascript), or None."""
    search = _search_path(base_dir)
    for name in _PREFERENCE[language]:
        found = shutil.which(name, path=search)
        if not found:
            continue
        if name == "deno":
            return Runtime("deno", found, ("run", "-A", "--quiet", "--no-prompt"))
        if name == "bun":
            return Runtime("bun", found, ("run",))
        if name == "tsx":
            return Runtime("tsx", found)
        if language == "javascript":
            return Runtime("node", found)
        version = node_version(found)
        if version is not None and version >= _NODE_STRIPS_TYPES:
            flags = ["--disable-warning=ExperimentalWarning"]
            if version < _NODE_STRIPS_BY_DEFAULT:
                flags.insert(0, "--experimental-strip-types")
            return Runtime("node", found, tuple(flags), _show(version))
    return None


def missing_runtime_message(language: str, base_dir: Path | None = None) -> str:
    """What to install, for a validation error."""
    if language == "typescript":
        message = (
            "typescript code needs a runtime: install tsx (npm install -g tsx), deno or bun, "
            "or use node >= 22.6"
        )
        node = shutil.which("node", path=_search_path(base_dir))
        version = node_version(node) if node else None
        if version is not None:
            message += f" (node {_show(version)} is on PATH, too old to run typescript)"
        return message
    return "javascript code needs a runtime: install node (https://nodejs.org), deno or bun"


def node_version(path: str) -> tuple[int, int, int] | None:
    """`node --version` as a tuple (cached per executable and modification time)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    key = (path, stamp)
    if key not in _node_versions:
        try:
            done = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
            match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", done.stdout)
            _node_versions[key] = (int(match[1]), int(match[2]), int(match[3])) if match else None
        except (OSError, subprocess.SubprocessError):
            _node_versions[key] = None
    return _node_versions[key]


_node_versions: dict[tuple[str, int], tuple[int, int, int] | None] = {}


def _show(version: tuple[int, int, int] | None) -> str | None:
    return None if version is None else "v" + ".".join(map(str, version))


def _search_path(base_dir: Path | None) -> str:
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    if base_dir is not None:
        parts.append(str(Path(base_dir) / "node_modules" / ".bin"))
    return os.pathsep.join(parts)


# ---------------------------------------------------------------------------------------------
# Running a job
# ---------------------------------------------------------------------------------------------


async def run_js(
    runtime: Runtime,
    *,
    language: str,
    inputs: dict[str, Any],
    variables: dict[str, Any],
    cwd: Path,
    function_name: str = "main",
    code: str | None = None,
    file_path: Path | None = None,
    shown: str | None = None,
) -> dict[str, Any]:
    """Run inline `code` or the module at `file_path` (`shown` is how messages name it); see
    the module docstring for the reply.
    Cancelling the call kills the process group and removes the temporary files."""
    folder = Path(tempfile.mkdtemp(prefix="dipeo-js-", dir=temp_dir()))
    try:
        job: dict[str, Any] = {
            "inputs": inputs,
            "variables": variables,
            "function_name": function_name,
            "result_path": str(folder / "reply.json"),
        }
        offset = 0
        if file_path is not None:
            job.update(mode="module", module=str(file_path), shown=shown or str(file_path))
            user_file, source = file_path, None
        else:
            assert code is not None
            suffix = ".mts" if language == "typescript" else ".mjs"
            user_file = folder / f"code{suffix}"
            if _TOP_LEVEL_EXPORT.search(code):
                user_file.write_text(code, encoding="utf-8")
                job.update(mode="module", module=str(user_file), shown="the code")
            else:
                module_text, offset = _body_module(code, inputs, function_name, cwd)
                user_file.write_text(module_text, encoding="utf-8")
                job.update(mode="body", module=str(user_file))
            source = code
        runner = folder / "runner.mjs"
        runner.write_text(_RUNNER, encoding="utf-8")
        payload = json.dumps(job, ensure_ascii=False, default=str).encode("utf-8")
        exit_code, stdout, stderr = await _run(runtime.argv(str(runner)), payload, cwd)
        reply_file = folder / "reply.json"
        reply: dict[str, Any] = {"stdout": clip(stdout), "stderr": clip(stderr)}
        reply["exit_code"] = exit_code
        if not reply_file.is_file():
            reply["ok"] = False
            reply["error"] = exit_message(
                exit_code,
                stderr,
                f"the process ended (exit code {exit_code}) before the code returned a result",
            )
            return reply
        try:
            answer = json.loads(reply_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            reply.update(
                ok=False, error=f"the reply of the {runtime.name} process is broken: {exc}"
            )
            return reply
        if answer.get("ok"):
            reply.update(ok=True, result=answer.get("result"), converted=answer.get("converted"))
            return reply
        reply["ok"] = False
        reply["error"] = await _describe(answer, runtime, user_file, offset, source)
        return reply
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _body_module(
    code: str, inputs: dict[str, Any], function_name: str, cwd: Path
) -> tuple[str, int]:
    """The module that runs `code` as a function body, and how many lines come before it."""
    imports: list[str] = []
    body: list[str] = []
    for line in code.splitlines():
        if _STATIC_IMPORT.match(line):
            imports.append(line.strip())
            body.append("")  # keep the user's line numbers
        else:
            body.append(line)
    consts = "".join(
        f"const {label} = inputs[{json.dumps(label)}]; " for label in inputs if is_identifier(label)
    )
    base = json.dumps(str(cwd) + os.sep)
    header = [
        *imports,
        'import { createRequire as __dipeoCreateRequire } from "node:module"; '
        f"const require = __dipeoCreateRequire({base}); "
        "export default async function (inputs, variables, __dipeoEnd) { "
        f"let result; {consts}return (async () => {{",
    ]
    footer = (
        "\n;return __dipeoEnd(typeof result === 'undefined' ? undefined : result, "
        f"typeof {function_name} === 'function' ? {function_name} : undefined);\n}})(); }}\n"
    )
    return "\n".join(header) + "\n" + "\n".join(body) + footer, len(header)


async def _run(argv: list[str], payload: bytes, cwd: Path) -> tuple[int | None, str, str]:
    code, out, err = await run_process(argv, cwd=str(cwd), stdin=payload)
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def _describe(
    answer: dict[str, Any], runtime: Runtime, user_file: Path, offset: int, source: str | None
) -> str:
    """'TypeError: message (line N: source)', the line being the user's."""
    message = str(answer.get("message") or "")
    if answer.get("plain"):
        return message
    name = str(answer.get("name") or "")
    if name == "TransformError":  # esbuild (tsx): "Transform failed ...\n<path>:3:4: ERROR: ..."
        found = re.search(r":(\d+):\d+: ERROR: (.+)", message)
        if found:
            name, message = "SyntaxError", found[2]
    text = f"{name}: {message}" if name and message else name or message or "the code failed"
    line = _user_line(f"{message}\n{answer.get('stack') or ''}", user_file)
    if line is None and name == "SyntaxError" and runtime.name == "node":
        line = await _syntax_error_line(runtime, user_file)
    if line is None:
        return text
    line -= offset
    if line < 1:
        return text
    if source is None:
        try:
            source = user_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            source = ""
    lines = source.splitlines()
    shown = lines[line - 1].strip() if line <= len(lines) else ""
    return f"{text} (line {line}: {shown})" if shown else f"{text} (line {line})"


def _user_line(text: str, user_file: Path) -> int | None:
    # Runtimes name the file as a path or a file:// URL, and tsx may change its suffix.
    stem = str(user_file.with_suffix(""))
    names = {stem, urllib.parse.quote(stem)}
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    match = re.search(rf"(?:{pattern})\.[cm]?[jt]sx?:(\d+)", text)
    return int(match[1]) if match else None


async def _syntax_error_line(runtime: Runtime, user_file: Path) -> int | None:
    """node reports no location for a syntax error in an imported module; `node --check` does."""
    try:
        _, _, err = await asyncio.wait_for(
            run_process(
                [runtime.path, *runtime.args, "--check", str(user_file)], cwd=str(user_file.parent)
            ),
            10,
        )
    except (OSError, TimeoutError):
        return None
    return _user_line(err.decode("utf-8", "replace"), user_file)


# The process's entry point: plain ESM that node, deno, bun and tsx all run. It reads the job
# from stdin, runs the code, and writes the reply to job.result_path.
_RUNNER = r"""
import fs from "node:fs";
import process from "node:process";
import { Buffer } from "node:buffer";
import { pathToFileURL } from "node:url";

class Plain extends Error {}
class End { constructor(result, fn) { this.result = result; this.fn = fn; } }

function functionsOf(mod) {
  const names = new Set();
  for (const source of [mod, mod && mod.default]) {
    if (source && (typeof source === "object" || typeof source === "function")) {
      for (const key of Object.keys(source)) {
        if (typeof source[key] === "function") names.add(key);
      }
    }
  }
  names.delete("default");
  return [...names].sort();
}

function pick(mod, name) {
  if (typeof mod[name] === "function") return mod[name];
  const fallback = mod.default;
  if (fallback && typeof fallback[name] === "function") return fallback[name];
  return undefined;
}

function encode(value) {
  let converted = false;
  const text = JSON.stringify(value === undefined ? null : value, (key, v) => {
    if (typeof v === "bigint") { converted = true; return v.toString(); }
    if (v instanceof Map) { converted = true; return Object.fromEntries(v); }
    if (v instanceof Set) { converted = true; return [...v]; }
    return v;
  });
  return { text, converted };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let reply;
try {
  const mod = await import(pathToFileURL(job.module).href);
  let value;
  if (job.mode === "body") {
    value = await mod.default(job.inputs, job.variables, (result, fn) => new End(result, fn));
    if (value instanceof End) value = value.fn ? await value.fn(job.inputs) : value.result;
  } else {
    const fn = pick(mod, job.function_name);
    if (fn) {
      value = await fn(job.inputs);
    } else if ("result" in mod) {
      value = await mod.result;
    } else {
      const found = functionsOf(mod);
      throw new Plain(
        `function '${job.function_name}' not found in ${job.shown}` +
        (found.length ? ` (it exports: ${found.join(", ")})` : " (it exports no function)"),
      );
    }
  }
  let encoded;
  try {
    encoded = encode(value);
  } catch (error) {
    throw new Plain(`the result cannot be converted to JSON: ${error && error.message}`);
  }
  reply = `{"ok": true, "converted": ${encoded.converted}, "result": ${encoded.text}}`;
} catch (error) {
  const isError = error instanceof Error;
  reply = JSON.stringify({
    ok: false,
    plain: error instanceof Plain,
    name: isError ? error.name : "",
    message: isError ? error.message : `the code threw ${(() => { try { return JSON.stringify(error); } catch { return String(error); } })()}`,
    stack: isError ? String(error.stack || "") : "",
  });
}
fs.writeFileSync(job.result_path, reply);
process.exit(0);
"""

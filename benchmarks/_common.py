"""Shared helpers of the benchmark scripts: processes, ports, polling, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Where each script writes its JSON and logs (the smoke test points it elsewhere).
OUT = Path(os.environ.get("LLMSPANS_BENCH_OUT", HERE / "out"))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_post(url: str, body: bytes, content_type: str, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until(
    check: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> float:
    """Polls ``check`` until true; returns the seconds waited, raises TimeoutError."""
    start = time.perf_counter()
    while True:
        try:
            if check():
                return time.perf_counter() - start
        except (OSError, ValueError):
            pass
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """A child process with its output in a log file, stopped on exit."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = OUT / f"{name}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd
        )
        self.ps = psutil.Process(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the process and its children so far."""
        total = 0.0
        for p in [self.ps, *self._children()]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in [self.ps, *self._children()]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _children(self) -> list[psutil.Process]:
        try:
            return self.ps.children(recursive=True)
        except psutil.Error:
            return []

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_loadgen(
    argv: Sequence[str], timeout: float = 600.0, on_go: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Runs ``loadgen.py`` in its own process; ``on_go`` runs right as sending starts."""
    cmd = [PYTHON, str(HERE / "loadgen.py"), *argv, "--wait-go"]
    p = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdin and p.stdout and p.stderr
    line = p.stderr.readline()
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"loadgen failed to start: {line}{p.stderr.read()}")
    if on_go is not None:
        on_go()
    p.stdin.write("go\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no result (exit {p.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def parse_prometheus(text: str) -> dict[str, float]:
    """Sums of each sample name over all label sets, plus ``name{labels}`` entries."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            key, value = line.rsplit(" ", 1)
            v = float(value)
        except ValueError:
            continue
        name = key.split("{", 1)[0]
        sums[name] = sums.get(name, 0.0) + v
        if "{" in key:
            sums[key] = v
    return sums


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import google.protobuf
    from google.protobuf.internal import api_implementation

    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "protobuf": f"{google.protobuf.__version__} ({api_implementation.Type()})",
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "when_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Writes one benchmark's results as ``out/NAME.json``."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


#: valgrind's total of instructions executed, in cachegrind's summary
_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")


def cachegrind_prefix(log_file: Path | str | None = None) -> list[str]:
    """The command put in front of ``python``: cachegrind without cache simulation,
    its summary written to ``log_file`` (standard error when None)."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    if log_file is not None:
        command.append(f"--log-file={log_file}")
    return command


def parse_instructions(text: str) -> int | None:
    """The ``I refs`` count in cachegrind's summary, or None."""
    found = _INSTRUCTIONS.search(text)
    return None if found is None else int(found.group(1).replace(",", ""))


def count_instructions(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float | None = None,
) -> int:
    """CPU instructions (valgrind's ``I refs``) that ``python ARGV`` executes under
    ``valgrind --tool=cachegrind --cache-sim=no``, with ``PYTHONHASHSEED`` fixed so
    that dict and set layouts repeat; ``env`` adds to the environment. RuntimeError
    with the end of valgrind's output when the child fails or prints no count."""
    command = [*cachegrind_prefix(), sys.executable, *argv]
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    done = subprocess.run(
        command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
        check=False,
    )
    count = parse_instructions(done.stderr)
    if done.returncode != 0 or count is None:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {done.returncode} under valgrind:\n"
            f"{done.stderr[-2000:]}"
        )
    return count


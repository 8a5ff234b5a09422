"""``lanfer serve`` in a child process on a free port of 127.0.0.1, for tests, benchmarks and notebooks."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator, Mapping, Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_subprocess(args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                        timeout_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``python -m lanfer serve --port PORT ARGS`` (on 127.0.0.1), wait until ``/healthz`` answers, and
    yield ``(url, process)``; the server is stopped on exit. ``env`` is added to this process's environment.

    Raises RuntimeError with the server's output if it exits or does not answer within ``timeout_s``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lanfer", "serve", "--host", "127.0.0.1", "--port", str(port),
                             *args], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lanfer serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"lanfer serve did not answer {url}/healthz within {timeout_s:g} s") from None
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

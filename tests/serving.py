"""`openbms serve` as a separate process, the way `make run` starts it, for tests that kill or stop it."""

from __future__ import annotations

import socket
import subprocess
import sys


def free_ports(n: int) -> list[int]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def spawn_serve(db: str, http_port: int, viss_port: int) -> subprocess.Popen:
    """A simulated 20-cell pack at 20x speed on `db`; its first stdout line is the owner's URL."""
    command = ["serve", "--db", db, "--port", str(http_port), "--viss-port", str(viss_port)]
    return subprocess.Popen(
        [sys.executable, "-m", "openbms.cli", *command, "--speed", "20", "--series", "20", "--sensors", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

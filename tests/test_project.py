"""The project's own set-up: what `pip install -e .` reads and what `make run` runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_expression_and_the_backend_reads_one():
    """A license table is deprecated (pip warns on every install); an SPDX string needs setuptools 77."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = " ".join(project["build-system"]["requires"])
    floor = re.search(r"setuptools>=(\d+)", requires)
    assert floor and int(floor.group(1)) >= 77, requires


def _dry_run(*args: str) -> str:
    return subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_takes_its_ports_from_the_command_line():
    """`make run PORT=... VISS_PORT=...` for a machine where 8000 or 8090 is taken."""
    assert "openbms serve --speed 10 --port 8123 --viss-port 8124" in _dry_run("run", "PORT=8123", "VISS_PORT=8124")
    assert "openbms serve --speed 10 --port 8000 --viss-port 8090" in _dry_run("run")

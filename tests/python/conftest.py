"""Shared fixtures: the chimera-sched binary the Python API is compared with.

CHIMERA_SCHED names it (.ci/run sets it); otherwise build/ and build-py/ of
the checkout are tried, and the comparisons are skipped when neither has it (a failure under CI=true).
"""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _find_cli():
    named = os.environ.get("CHIMERA_SCHED")
    if named:
        if not os.access(named, os.X_OK):
            raise RuntimeError(f"CHIMERA_SCHED={named} is not an executable")
        return named
    for build in ("build", "build-py"):
        path = ROOT / build / "examples" / "chimera-sched" / "chimera-sched"
        if os.access(path, os.X_OK):
            return str(path)
    return None


class Cli:
    """Runs chimera-sched; `json` parses its standard output."""

    def __init__(self, path):
        self.path = path

    def run(self, *args):
        return subprocess.run([self.path, *map(str, args)], capture_output=True, text=True, timeout=120)

    def out(self, *args):
        result = self.run(*args)
        assert result.returncode == 0, f"chimera-sched {' '.join(map(str, args))}: {result.stderr}"
        return result.stdout

    def json(self, *args):
        return json.loads(self.out(*args))


@pytest.fixture(scope="session")
def cli():
    path = _find_cli()
    if path is None:
        if os.environ.get("CI"):  # CI builds it: comparing nothing there would pass silently
            pytest.fail("chimera-sched not found under CI=true (set CHIMERA_SCHED)")
        pytest.skip("chimera-sched not built (set CHIMERA_SCHED)")
    return Cli(path)

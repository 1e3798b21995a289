"""A benchmark run leaves the tracked files alone unless asked (``RECORD=1``), and never records a miss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACKED = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
BENCHMARKS = ("benchmark", "benchmark-devices", "benchmark-tenants", "load-test")


def make_dry_run(*words: str) -> str:
    """What make would run, without running it (nor installing anything)."""
    return subprocess.run(  # noqa: S603 - make with our own targets
        ["make", "-n", "-W", ".venv313/bin/.installed", "-W", ".venv-bench/bin/.installed", *words],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize("target", BENCHMARKS)
def test_a_benchmark_writes_the_readmes_only_with_record(target: str) -> None:
    assert "--write-readme" not in make_dry_run(target)
    assert "--write-readme" in make_dry_run(target, "RECORD=1")


@pytest.mark.parametrize(("missed", "record"), [(["cold vs by hand"], True), ([], False)])
def test_publish_leaves_the_tracked_files_alone(
    missed: list[str], record: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("grpc", reason="the benchmarks drive the real worker, which needs Python 3.13")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from harness import publish  # noqa: PLC0415 - only where the benchmarks can run

    before = [path.read_text() for path in TRACKED]

    code = publish("benchmark", "figures", "targets", missed, write_readme=record)

    assert [path.read_text() for path in TRACKED] == before
    assert code == (1 if missed else 0)
    said = capsys.readouterr().out
    assert ("run it once more before trusting a miss" in said) == bool(missed)
    assert ("RECORD=1" in said) == (not missed)

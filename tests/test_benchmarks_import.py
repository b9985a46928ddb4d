"""Every benchmark script still imports against today's analysis/ and ui/ (a renamed or moved name breaks
`make bench` silently otherwise: its loop goes on to the next script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCH, ids=lambda p: p.name)
def test_benchmark_script_imports(path: Path):
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # top level only: main() runs under __name__ == "__main__"
    if path.name.startswith("bench_"):
        assert callable(getattr(module, "main", None)), f"{path.name} has no main()"

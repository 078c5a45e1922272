"""examples/optimizer_paths.py runs and writes its figure."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("matplotlib")

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "optimizer_paths.py"


def test_optimizer_paths_example_writes_a_png(tmp_path: pathlib.Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("optimizer_paths", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "paths.png"
    module.main([str(out), "--steps", "30"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.count("ends at") == len(module.OPTIMIZERS) == 6

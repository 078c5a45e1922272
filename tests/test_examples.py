"""Every file in examples/ runs to the end in its quick setting and prints what it promises.

The examples start together, each in its own interpreter (as a user runs them,
and without this suite's float64 default), so the whole file costs about as
long as the slowest one.
"""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"

# For each example: its quick arguments and a line of what it must print.
QUICK = {
    "adding_problem.py": (["--steps", "3", "--length", "10"], "test MSE"),
    "min_char_rnn.py": (["--quick"], "bits/char"),
    "optimizer_paths.py": (["paths.png", "--steps", "30"], "ends at"),
    "seq2seq.py": (["--quick"], "exact match"),
    "sequence_classification.py": (["--quick"], "row by row (T=8)"),
    "time_series.py": (["--quick", "--plot", "forecast.png"], "linear AR(20)"),
    "word2vec.py": (["--quick"], " -> "),
}
WRITES = {"optimizer_paths.py": "paths.png", "time_series.py": "forecast.png"}


def start(name, args, cwd, env):
    """examples/NAME ARGS started in ``cwd``, its output (both streams) to be read."""
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Runs every example at once; returns {name: (status, output, working directory)}."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.pop("JAX_ENABLE_X64", None)
    running = {}
    for name, (args, _) in QUICK.items():
        if not (EXAMPLES / name).exists():
            continue
        cwd = tmp_path_factory.mktemp(name.removesuffix(".py"))
        running[name] = (start(name, args, cwd, env), cwd)
    results = {}
    for name, (process, cwd) in running.items():
        output, _ = process.communicate(timeout=600)
        results[name] = (process.returncode, output, cwd)
    return results


def test_every_example_is_listed():
    present = {path.name for path in EXAMPLES.glob("*.py")}
    assert present <= set(QUICK), f"add quick arguments for {sorted(present - set(QUICK))}"


@pytest.mark.parametrize("name", sorted(QUICK))
def test_example_runs(finished, name):
    if name not in finished:
        pytest.skip(f"examples/{name} is not there")
    status, output, cwd = finished[name]
    assert status == 0, output[-3000:]
    assert QUICK[name][1] in output, output[-3000:]
    if name in WRITES:
        assert (cwd / WRITES[name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# A user's file given as the figure's name by mistake: refused before any work (they
# were overwritten, and a name matplotlib or PIL cannot write failed after training).
REFUSED = [
    ("time_series.py", ["--quick", "--plot", "notes.md"], "--plot notes.md: a .png, .pdf"),
    ("time_series.py", ["--quick", "--plot", "mine.png"], "--plot mine.png exists and is not"),
    ("optimizer_paths.py", ["notes.md", "--steps", "3"], "OUT notes.md: a .png file expected"),
    ("optimizer_paths.py", ["mine.png", "--steps", "3"], "OUT mine.png exists and is not a PNG"),
]


def test_the_figures_replace_no_users_file(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    running = []
    for number, (name, args, message) in enumerate(REFUSED):
        cwd = tmp_path / str(number)
        cwd.mkdir()
        for mine in ("notes.md", "mine.png"):
            (cwd / mine).write_text("keep me\n")
        running.append((start(name, args, cwd, env), cwd, message))
    for process, cwd, message in running:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 2 and message in output, output[-3000:]
        assert sorted(p.name for p in cwd.iterdir()) == ["mine.png", "notes.md"]
        assert {p.read_text() for p in cwd.iterdir()} == {"keep me\n"}

"""``jaxrnn probe`` and ``jaxrnn task``: figures render headless, JSON holds the plotted numbers,
bad arguments get one-line messages, and a short smoke run of each command works."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from jaxrnn import plots
from jaxrnn.cli import build_parser, main
from jaxrnn.commands import probe

# --------------------------------------------------------------------------- plots


def _png_ok(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn


def test_line_plot_writes_png_and_the_plotted_numbers(tmp_path):
    y = np.array([1.0, 1e-3, 0.0, np.nan, 1e-9])  # zeros and NaN cannot sit on a log axis
    png, js = plots.line_plot(
        [{"label": "a", "y": y}, {"label": "b", "x": [2, 3], "y": [5.0, 6.0], "style": "--"}],
        tmp_path / "sub" / "fig.png",
        title="t",
        xlabel="x",
        ylabel="y",
        hlines=[{"y": 0.5, "label": "baseline"}],
        note="set-up",
    )
    assert png == tmp_path / "sub" / "fig.png" and js == tmp_path / "sub" / "fig.json"
    _png_ok(png)
    data = json.loads(js.read_text())
    assert data["series"][0]["y"] == [1.0, 1e-3, 0.0, None, 1e-9]
    assert data["series"][0]["x"] == [0, 1, 2, 3, 4]
    assert data["series"][1] == {
        "label": "b",
        "x": [2, 3],
        "y": [5.0, 6.0],
        "style": "--",
        "color": None,
    }
    assert data["hlines"][0]["y"] == 0.5 and data["yscale"] == "log" and data["note"] == "set-up"


def test_heatmaps_and_cliff_plot_write_their_numbers(tmp_path):
    values = np.exp(-np.arange(12.0)).reshape(3, 4)
    png, js = plots.heatmaps(
        [{"label": "p", "rows": [0, 10, 20], "columns": [0, 1, 2, 3], "values": values}] * 2,
        tmp_path / "heat.png",
        title="t",
    )
    _png_ok(png)
    data = json.loads(js.read_text())
    np.testing.assert_allclose(data["panels"][1]["values"], values, rtol=1e-6)  # 7 digits
    assert data["panels"][0]["rows"] == [0, 10, 20]

    w, b = np.linspace(0, 1, 5), np.linspace(-1, 1, 4)
    loss = np.outer(b**2 + 0.1, w + 1)
    png, js = plots.cliff_plot(
        w,
        b,
        loss,
        2 * loss,
        [{"label": "gd", "w": [0.5, 0.6], "b": [0.0, 0.1]}],
        tmp_path / "cliff.png",
        title="c",
    )
    _png_ok(png)
    data = json.loads(js.read_text())
    np.testing.assert_allclose(data["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(data["grad_norm"], 2 * loss, rtol=1e-6)
    assert data["paths"][0]["w"] == [0.5, 0.6]


def test_to_jsonable_handles_arrays_tuples_and_non_finite_numbers():
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: float
        b: np.ndarray

    out = plots.to_jsonable({"p": Pair(np.float32(1.5), np.array([np.inf, 2]))})
    assert out == {"p": {"a": 1.5, "b": [None, 2.0]}}


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    """One tiny `jaxrnn task` run, shared by the tests that read its JSON."""
    out = tmp_path_factory.mktemp("runs") / "adding_elman.json"
    argv = [
        "task",
        "adding",
        "--cell",
        "elman",
        "--length",
        "6",
        "--hidden",
        "4",
        "--batch",
        "8",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--test-size",
        "16",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


def test_task_command_smoke_run_writes_the_run(task_run, capsys):
    run = json.loads(task_run.read_text())
    assert run["config"]["cell"] == "elman" and run["config"]["length"] == 6
    assert run["baseline"] == pytest.approx(1 / 6)
    assert run["history"]["step"] == [0, 2, 4]
    assert len(run["history"]["test"]["loss"]) == 3
    norms = np.asarray(run["grad_profiles"]["norms"])
    assert norms.shape == (3, 6) and np.all(norms > 0)
    assert run["history"]["train_loss"][0] is None  # no training loss before step 1
    assert set(run["spectrum"]["init"]) == {"h"}
    assert run["spectrum"]["init"]["h"]["spectral_radius"] == pytest.approx(1.0, abs=1e-5)


def test_probe_command_smoke_run(task_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(probe, "CLIFF_GRID", (9, 7))
    monkeypatch.setattr(probe, "CLIFF_DESCENT_STEPS", 5)
    monkeypatch.setattr(probe, "THEORY_HIDDEN", 3)
    monkeypatch.setattr(probe, "THEORY_LINEAR_LENGTH", 12)
    monkeypatch.setattr(probe, "THEORY_TANH_LENGTH", 8)
    every_variant = probe.init_variants
    monkeypatch.setattr(probe, "init_variants", lambda hidden: every_variant(hidden)[::6])
    argv = [
        "probe",
        "init",
        "cliff",
        "theory",
        "trained",
        "--runs",
        str(task_run),
        "--length",
        "6",
        "--hidden",
        "4",
        "--batch",
        "3",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    expected = [
        "grad_norms_init",
        "cliff",
        "theory_linear",
        "theory_tanh",
        "grad_norms_trained_adding_T6",
        "grad_norms_heatmap_adding_T6",
        "learning_curves_adding_T6",
    ]
    for stem in expected:
        _png_ok(tmp_path / f"{stem}.png")
        assert json.loads((tmp_path / f"{stem}.json").read_text())["title"]
    # --out's check of what it may replace lists the very files the figures write.
    args = build_parser().parse_args(argv)
    runs = probe._load_runs(args.runs)
    checked = [stem for name in args.figures for stem in probe._stems(name, args, runs)]
    assert sorted(checked) == sorted(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in expected for suffix in (".json", ".png")
    )
    init = json.loads((tmp_path / "grad_norms_init.json").read_text())
    labels = [s["label"].split("  ")[0] for s in init["series"]]
    assert labels == ["Elman tanh, orthogonal x0.9", "LSTM, forget bias 1"]
    assert "(ρ=0.90)" in init["series"][0]["label"]  # w_hh is scaled as the label says
    assert all(len(s["y"]) == 6 for s in init["series"])
    trained = json.loads((tmp_path / "grad_norms_trained_adding_T6.json").read_text())
    run = json.loads(task_run.read_text())
    np.testing.assert_allclose(trained["series"][1]["y"], run["grad_profiles"]["norms"][-1])
    assert "cliff" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["task", "sorting"], "unknown task 'sorting'"),
        (["task", "adding", "--cell", "rnn"], "unknown cell 'rnn'; choose one of lstm, gru, elman"),
        (["task", "adding", "--length", "1"], "--length must be at least 2"),
        (["task", "temporal_order", "--length", "3"], "--length must be at least 4"),
        (["task", "adding", "--cell", "lstm", "--init", "identity"], "not available for lstm"),
        (["task", "adding", "--steps", "0"], "--steps must be a positive integer"),
        (["task", "adding", "--cell", "lstm", "--activation", "relu"], "for the elman cell"),
        (["task", "adding", "--time-limit", "-1"], "--time-limit must be a number of seconds"),
        (["task", "adding", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["task", "adding", "--target", "nan"], "--target must be a finite test loss, got nan"),
        (["probe", "spectra"], "unknown figure 'spectra'; choose from init, trained"),
        (["probe", "init", "--length", "1"], "--length must be at least 2"),
        (["probe", "trained", "--runs", "/nonexistent.json"], "cannot read run"),
    ],
)
def test_bad_arguments_print_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("module", ["jaxrnn", "jaxrnn.cli"])
def test_python_dash_m_prints_one_line_errors(module):
    # `python -m jaxrnn.cli` runs cli.py as __main__, whose CommandError is not the
    # commands': the error came out as a traceback.
    child = subprocess.run(
        [sys.executable, "-m", module, "probe", "spectra"], capture_output=True, text=True
    )
    assert child.returncode == 2
    assert child.stderr == (
        "jaxrnn probe: error: unknown figure 'spectra'; choose from init, trained, cliff, theory\n"
    )


@pytest.mark.parametrize("command", ["task adding", "train", "sample", "probe init"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_jax_would_cut_to_32_bits_are_refused(command, seed, capsys):
    # jax.random.key keeps a seed's low 32 bits: 2**32 would be seed 0's run, recorded as another.
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--seed", seed])
    assert exit_info.value.code == 2
    assert f"--seed: it must lie in [0, 2**32), got {seed}" in capsys.readouterr().err


def test_outputs_never_replace_a_users_file_and_fail_before_training(task_run, tmp_path, capsys):
    """`task --out` replaces an earlier run's JSON only, and refuses any other file, a
    directory, or a path under a file before it trains; `probe --runs` refuses runs of
    different tasks or lengths."""
    notes = tmp_path / "notes.json"
    notes.write_text('{"precious": 1}')
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    task = ["task", "adding", "--length", "6", "--hidden", "4", "--steps", "1", "--quiet"]
    for out, message in [
        (notes, "exists and is not the JSON of a `jaxrnn task` run"),
        (tmp_path, "is a directory"),
        (a_file / "run.json", "--out"),
    ]:
        assert main([*task, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert notes.read_text() == '{"precious": 1}'
    other = json.loads(task_run.read_text())
    other["config"]["length"] = 9
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    argv = ["probe", "trained", "--runs", str(task_run), str(other_path), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--runs must be runs of one task at one length, got adding T=6, adding T=9" in err
    earlier = tmp_path / "earlier.json"  # an earlier run's JSON: replaced
    earlier.write_text(task_run.read_text())
    assert main([*task, "--test-size", "8", "--eval-every", "1", "--out", str(earlier)]) == 0
    assert json.loads(earlier.read_text())["config"]["steps"] == 1


# A write that fails half way, as on a full disk: RLIMIT_FSIZE makes it fail with EFBIG.
FAILING_WRITE = r"""
import resource, signal, sys
from jaxrnn import plots

path = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-limit write raises OSError instead
resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.RLIM_INFINITY))
try:
    plots.write_json(path, {"config": {"steps": 2}, "grad_profiles": [], "loss": [0.25] * 1000})
except OSError:
    print("failed")
"""


def test_a_failed_json_write_keeps_the_earlier_file(tmp_path):
    """`task --out` replaces an earlier run's JSON: a write that fails leaves that run whole
    (write_json truncated it first) and no temporary file."""
    path = plots.write_json(tmp_path / "run.json", {"config": {}, "grad_profiles": [], "x": 1})
    before = path.read_text()
    child = subprocess.run(
        [sys.executable, "-c", FAILING_WRITE, str(path)], capture_output=True, text=True
    )
    assert child.stdout == "failed\n", child.stderr
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


FAILING_FIGURE = r"""
import resource, signal, sys
from jaxrnn import plots

path = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
try:
    plots.line_plot([{"label": "b", "y": [3.0, 2.0, 1.0]}], path, title="b", xlabel="", ylabel="")
except OSError:
    print("failed")
"""


def test_a_failed_figure_write_keeps_the_earlier_figure(tmp_path):
    """`probe --out` replaces earlier figures: a PNG that fails half way (savefig wrote it
    in place) leaves the earlier one whole, and no temporary file."""
    png, js = plots.line_plot(
        [{"label": "a", "y": [1.0, 2.0]}], tmp_path / "fig.png", title="a", xlabel="", ylabel=""
    )
    before = png.read_bytes(), js.read_text()
    child = subprocess.run(
        [sys.executable, "-c", FAILING_FIGURE, str(png)], capture_output=True, text=True
    )
    assert child.stdout == "failed\n", child.stderr
    assert (png.read_bytes(), js.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.json", "fig.png"]


def test_probe_out_replaces_earlier_figures_only(task_run, tmp_path, monkeypatch, capsys):
    """`probe --out` wrote its PNG + JSON pairs over whatever had their names (a user's
    cliff.json was lost); it now refuses, before any work, all but earlier figures."""
    monkeypatch.setattr(probe, "CLIFF_GRID", (9, 7))
    monkeypatch.setattr(probe, "CLIFF_DESCENT_STEPS", 5)
    notes = tmp_path / "cliff.json"
    notes.write_text('{"precious": 1}')
    assert main(["probe", "cliff", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cliff.json exists and is not a figure of `jaxrnn probe`" in err and err.count("\n") == 1
    assert notes.read_text() == '{"precious": 1}' and not (tmp_path / "cliff.png").exists()
    picture = tmp_path / "learning_curves_adding_T6.png"  # a PNG with no figure JSON beside it
    picture.write_bytes(b"mine")
    assert main(["probe", "trained", "--runs", str(task_run), "--out", str(tmp_path)]) == 2
    assert "learning_curves_adding_T6.png exists" in capsys.readouterr().err
    assert picture.read_bytes() == b"mine"
    notes.unlink()
    for _ in range(2):  # the second run replaces the first's figure
        assert main(["probe", "cliff", "--out", str(tmp_path)]) == 0
    assert json.loads(notes.read_text())["kind"] == "cliff_plot"


def test_theory_rates_tend_to_the_spectral_radius():
    """The theory curve: (‖∂L/∂h_(T-1-k)‖ / ‖∂L/∂h_(T-1)‖)^(1/k), from the end, tends to ρ."""
    import jax

    with jax.enable_x64(True):
        curves = probe.linear_rate_curves(3, 300, (0.8, 1.05), seed=0)
    for curve in curves:
        assert list(curve["x"][:2]) == [1, 2] and len(curve["y"]) == 299
        assert curve["y"][-1] == pytest.approx(curve["radius"], rel=0.03)

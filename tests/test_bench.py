"""The benchmark suite runs end to end at toy sizes (a smoke test: speed is never asserted)."""

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

import jax
import pytest

from jaxrnn import blas, cli
from jaxrnn.commands import bench


def run_tiny(tmp_path, workload, contenders):
    jsonl, markdown = tmp_path / f"{workload}.jsonl", tmp_path / f"{workload}.md"
    argv = ["bench", workload, "--tiny", "--repeats", "1", "--warmup", "0"]
    argv += ["--contenders", contenders, "--jsonl", str(jsonl), "--markdown", str(markdown)]
    assert cli.main(argv) == 0
    return [json.loads(line) for line in jsonl.read_text().splitlines()], markdown.read_text()


def timed_keys(records):
    return {(r["workload"], r["pass"], r["contender"]) for r in records if "median_ms" in r}


def test_jaxrnn_bench_runs_every_peer_on_a_tiny_layer(tmp_path, capsys):
    records, table = run_tiny(tmp_path, "lstm", "jaxrnn,flax,equinox,pytorch,jax-cudnn")
    assert timed_keys(records) == {
        ("lstm", p, c)
        for p in ("forward", "train")
        for c in ("jaxrnn", "flax", "equinox", "pytorch")
    }
    timed = [r for r in records if "median_ms" in r]
    assert all(r["median_ms"] > 0 and r["machine"]["jax"] for r in timed)
    assert all(r["compile_s"] > 0 for r in timed if r["contender"] != "pytorch")
    assert any("cuDNN" in r.get("skipped", "") for r in records)  # no GPU here
    assert "| lstm | train |" in table and "Ratio of times, jaxrnn / peer" in table
    assert table in capsys.readouterr().out
    # The machine's matmul rate, measured first, and each pass's rate read against it.
    (roof,) = [r for r in records if "roof" in r]
    libraries = {"jnp.dot", "torch.mm"} | ({"jaxrnn.blas"} if blas.available() else set())
    assert roof["size"] == 256 and set(roof["gflops"]) == libraries
    assert all(rate > 0 for rate in roof["gflops"].values())
    rates = table[table.index("Rate of the matrix products") :]
    assert f"{max(roof['gflops'].values()):.0f} GFLOP/s" in rates and "| lstm | train |" in rates

    # The tables again from the saved results, running nothing; from a run cut
    # short, those of what it finished.
    jsonl, again = tmp_path / "lstm.jsonl", tmp_path / "again.md"
    assert cli.main(["bench", "--tables-from", str(jsonl), "--markdown", str(again)]) == 0
    assert again.read_text() == table
    first = [line for line in jsonl.read_text().splitlines() if '"forward"' in line]
    jsonl.write_text("\n".join(first) + "\n")
    assert cli.main(["bench", "--tables-from", str(jsonl), "--markdown", str(again)]) == 0
    assert "| lstm | forward |" in again.read_text()
    assert "| lstm | train |" not in again.read_text()


def test_jaxrnn_bench_runs_a_tiny_training_step(tmp_path):
    records, _ = run_tiny(tmp_path, "char-lstm-train", "jaxrnn,pytorch,pytorch-aten")
    assert timed_keys(records) == {
        ("char-lstm-train", p, c)
        for p in ("forward", "train")
        for c in ("jaxrnn", "pytorch", "pytorch-aten")
    }


def test_the_compile_time_sweep_covers_each_cell(tmp_path):
    jsonl, markdown = tmp_path / "sweep.jsonl", tmp_path / "sweep.md"
    argv = ["bench", "elman", "--tiny", "--repeats", "1", "--warmup", "0", "--compile-scaling"]
    argv += ["--contenders", "jaxrnn,flax", "--jsonl", str(jsonl), "--markdown", str(markdown)]
    assert cli.main(argv) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    swept = {(r["cell"], r["contender"], r["compile_scaling"]) for r in records if "cell" in r}
    assert swept == {
        (cell, name, t)
        for cell in ("lstm", "gru", "elman")
        for name in ("jaxrnn", "flax")
        for t in (5, 10)
    }
    assert all(r["compile_s"] > 0 for r in records if "cell" in r)
    table = markdown.read_text()
    assert "| cell | contender | T=5 | T=10 |" in table
    assert "| gru | flax linen |" in table


def test_a_contender_that_fails_is_recorded_and_spoils_no_other(tmp_path, monkeypatch, capsys):
    # On a device machine one run may be all there is: one library's failure must
    # not lose the others' results (the command still exits with 1).
    bench._runner()
    contenders = sys.modules["contenders"]
    build = contenders.build

    def flax_breaks(name, *args):
        if name == "flax":
            raise RuntimeError("no kernel for this")
        return build(name, *args)

    monkeypatch.setattr(contenders, "build", flax_breaks)
    jsonl = tmp_path / "out.jsonl"
    argv = ["bench", "elman", "--tiny", "--repeats", "1", "--warmup", "0", "--jsonl", str(jsonl)]
    assert cli.main([*argv, "--contenders", "jaxrnn,flax"]) == 1
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert timed_keys(records) == {("elman", p, "jaxrnn") for p in ("forward", "train")}
    failed = [r for r in records if r.get("skipped", "").startswith("failed:")]
    assert [r["contender"] for r in failed] == ["flax", "flax"]
    assert "RuntimeError: no kernel for this" in failed[0]["skipped"]
    assert "flax: failed: RuntimeError" in capsys.readouterr().err


def test_a_contender_that_fails_in_the_compile_time_sweep_spoils_no_other(
    tmp_path, monkeypatch, capsys
):
    bench._runner()
    contenders = sys.modules["contenders"]
    build = contenders.build

    def flax_breaks_in_the_sweep(name, workload, *args):
        if name == "flax" and "-T" in workload.name:
            raise RuntimeError("no kernel for this")
        return build(name, workload, *args)

    monkeypatch.setattr(contenders, "build", flax_breaks_in_the_sweep)
    jsonl, markdown = tmp_path / "sweep.jsonl", tmp_path / "sweep.md"
    argv = ["bench", "elman", "--tiny", "--repeats", "1", "--warmup", "0", "--compile-scaling"]
    argv += ["--contenders", "jaxrnn", "--jsonl", str(jsonl), "--markdown", str(markdown)]
    assert cli.main(argv) == 1
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    swept = [r for r in records if "compile_scaling" in r]
    assert {(r["cell"], r["compile_scaling"]) for r in swept if "compile_s" in r} == {
        (cell, t) for cell in ("lstm", "gru", "elman") for t in (5, 10)
    }
    assert all(r["contender"] == "jaxrnn" for r in swept if "compile_s" in r)
    assert sum(r.get("skipped", "").startswith("failed:") for r in swept) == 6
    table = markdown.read_text()
    assert "| elman | jaxrnn |" in table and "| elman | flax linen |" not in table
    assert "flax linen: failed: RuntimeError: no kernel for this" in table
    assert "elman-T5 flax: failed: RuntimeError" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["jaxrnn", "flax", "equinox"])
def test_a_jax_training_step_waits_for_every_output(name, monkeypatch):
    # The loss is ready before the backward pass and the update are: a call that
    # waited for it alone could stop the clock before the step is done.
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    from workloads import WORKLOADS, tiny

    workload = tiny(WORKLOADS["char-lstm-train"])
    step = contenders.build(name, workload, workload.inputs(), "train")
    waited = []
    block = jax.block_until_ready
    monkeypatch.setattr(jax, "block_until_ready", lambda x: waited.append(x) or block(x))
    step.call()
    (outputs,) = waited
    params, opt_state, loss = outputs
    assert loss.shape == ()
    leaves = jax.tree.leaves((params, opt_state))
    assert len(leaves) > 4 and all(isinstance(a, jax.Array) for a in leaves)


def _dot_flops(jaxpr, times=1):
    """2 x the multiply-adds of every dot_general a jaxpr runs, a scan's body once per
    step: the count the workloads' formula must agree with."""
    import math

    import jax.extend

    flops = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contracted, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape  # each output element: one contracted length
            flops += times * 2 * math.prod(out) * math.prod(lhs[d] for d in contracted)
        inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else [value]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    flops += _dot_flops(sub.jaxpr, inner)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    flops += _dot_flops(sub, inner)
    return flops


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "char-lstm-train"])
def test_matmul_flops_are_those_of_the_products_autodiff_runs(name, monkeypatch):
    # Counted from the jaxpr of jaxrnn's plain layer (no fused kernel) and its
    # gradient with respect to the parameters: the formula the rate table uses.
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    from workloads import WORKLOADS, tiny

    workload = tiny(WORKLOADS[name])
    data = workload.inputs()
    if workload.train_step:
        init, loss = contenders._jaxrnn_char(workload, fused=False)
        params, _ = init()

        def forward(p):
            return loss(p, data["xs"], data["targets"])

    else:
        params, layer = contenders._jaxrnn_layer(workload, fused=False)

        def forward(p):
            return jax.numpy.sum(layer(p, data["xs"]))

    counted = {
        "forward": _dot_flops(jax.make_jaxpr(forward)(params).jaxpr),
        "train": _dot_flops(jax.make_jaxpr(jax.grad(forward))(params).jaxpr),
    }
    assert counted == {p: workload.matmul_flops(p) for p in ("forward", "train")}


def test_the_rate_functions_examples_run(monkeypatch):
    # The benchmark modules are not in jaxrnn's package, whose docstrings
    # test_docstrings runs: the examples of matmul_flops, matmul_roof and matmul_rate.
    import doctest

    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import workloads

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for module in (workloads, bench._runner()):
        result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize(("name", "onednn"), [("pytorch", True), ("pytorch-aten", False)])
def test_pytorch_aten_contender_runs_with_onednn_off(name, onednn, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    from workloads import WORKLOADS, tiny

    seen = []
    forward = torch.nn.LSTM.forward

    def recording_forward(self, *args, **kwargs):
        seen.append(torch.backends.mkldnn.enabled)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.LSTM, "forward", recording_forward)
    workload = tiny(WORKLOADS["lstm"])
    for pass_ in ("forward", "train"):
        contenders.build(name, workload, workload.inputs(), pass_).call()
    assert seen == [onednn, onednn]
    assert torch.backends.mkldnn.enabled  # restored after each call


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "nope"], "unknown workload(s) nope"),
        (["bench", "--contenders", "jaxrnn,theano"], "unknown contender(s) theano"),
        (["bench", "--repeats", "0"], "--repeats must be >= 1"),
        (["bench", "--tables-from", "/nonexistent.jsonl"], "--tables-from: cannot read"),
        (["bench", "--markdown", "/"], "--markdown /: a file in an existing folder expected"),
        (["bench", "--jsonl", "/nonexistent/x.jsonl"], "--jsonl /nonexistent/x.jsonl: a file"),
    ],
)
def test_jaxrnn_bench_rejects_bad_arguments_in_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_tables_from_names_the_line_that_is_not_json(tmp_path, capsys):
    jsonl = tmp_path / "cut.jsonl"
    jsonl.write_text('{"a": 1}\n\n{"b": 2}\n{"workload": "lstm", "pa\n')
    assert cli.main(["bench", "--tables-from", str(jsonl)]) == 2
    assert f"line 4 of {jsonl} is not JSON" in capsys.readouterr().err


def test_jaxrnn_bench_lists_the_workloads(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "char-lstm-train" in out and "lstm-long" in out


def test_the_command_finds_the_suite_in_the_checkout():
    assert bench._runner() is not None


def test_the_gpu_runs_are_wired_and_say_why_they_are_skipped_on_a_cpu(capsys):
    runner = bench._runner()
    contenders = sys.modules["contenders"]
    workloads = sys.modules["workloads"]
    long = workloads.WORKLOADS["lstm-long"]
    assert (long.time, long.batch, long.hidden_size, long.gpu_only) == (1024, 16, 768, True)
    assert contenders.unavailable("jax-cudnn", long, "cpu") == "cuDNN needs a GPU"
    assert contenders.unavailable("jax-cudnn", long, "gpu") is None
    gru = workloads.WORKLOADS["gru"]
    assert "only an LSTM" in contenders.unavailable("jax-cudnn", gru, "gpu")
    info = {k: "x" for k in ("processor", "cpu_count", "backend", "device", "jax")}
    text = runner.tables([], info, {"lstm-long": "GPU only, and this backend is cpu"})
    assert "Workloads not run: lstm-long: GPU only, and this backend is cpu." in text
    if jax.default_backend() == "gpu":
        return
    # Named on a CPU, it is refused with the reason.
    assert cli.main(["bench", "lstm-long"]) == 2
    assert "lstm-long runs on a GPU only" in capsys.readouterr().err


def test_pieces_puts_each_matmul_beside_pytorchs(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import pieces

    from jaxrnn import blas

    assert pieces.main(["lstm", "--tiny", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0][2:]: line for line in out.splitlines() if line.startswith("| ")}
    for piece in ("projection", "step matmuls", "backward step matmuls", "weight gradients"):
        cells = rows[piece].strip("| ").split(" | ")[1:]
        # XLA, oneMKL, PyTorch and the two ratios; oneMKL's only where it is built.
        assert len(cells) == 5
        timed = cells if blas.available() else [cells[0], cells[2], cells[3]]
        assert all(float(c) > 0 for c in timed), rows[piece]
    assert "| train | " in rows["train"] and "PyTorch ATen" in out


def test_round_ratios_pair_the_rounds_in_which_both_ran(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import run

    # Two timed calls per round; the machine slows down 10x in the third round,
    # for both contenders alike: the per-round ratios do not see it.
    ours = {"median_ms": 2.0, "times_ms": [2, 2, 1, 3, 20, 20, 2, 2], "burst": 2}
    theirs = {"median_ms": 4.0, "times_ms": [4, 4, 4, 4, 40, 40, 8, 8], "burst": 2}
    assert run.round_ratios(ours, theirs) == [0.5, 0.5, 0.5, 0.25]
    assert run._ratio_cell(ours, theirs) == "0.50 (0.50, 0.31–0.50)"
    # Fewer than 4 rounds: the ratio of the medians alone.
    short = {"median_ms": 2.0, "times_ms": [2, 2, 2, 2], "burst": 2}
    assert run._ratio_cell(short, theirs) == "0.50"


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("pieces", ["lstm", "--repeats", "0"], "--repeats must be >= 1, got 0"),
        (
            "pieces",
            ["lstm", "--quiet", "1.5"],
            "--quiet is a share of the cores in [0, 1), got 1.5",
        ),
        ("pieces", ["gru"], "invalid choice: 'gru'"),
        # unroll_sweep checks before anything compiles: --repeats 0 failed with 'no
        # median for empty data' once every unroll had been compiled.
        (
            "unroll_sweep",
            ["elman", "--repeats", "0"],
            "--repeats must be >= 1 and --warmup >= 0, got 0 and 2",
        ),
        (
            "unroll_sweep",
            ["elman", "--warmup", "-1"],
            "--repeats must be >= 1 and --warmup >= 0, got 10 and -1",
        ),
        (
            "unroll_sweep",
            ["elman", "--unroll", "1", "0"],
            "--unroll takes steps per iteration >= 1, got 0",
        ),
        ("unroll_sweep", ["char-lstm-train"], "choose a one-layer workload"),
        # bench_optim ran nothing for an unknown --only, and wrote --out empty; --repeats 0
        # failed with 'no median for empty data' once the first optimizer was compiled.
        (
            "bench_optim",
            ["--only", "sgd", "adamm", "--params", "1e4"],
            "--only: unknown optimizer(s) adamm; choose from sgd, ",
        ),
        (
            "bench_optim",
            ["--only", "sgd", "--params", "1e4", "--repeats", "0"],
            "--repeats must be >= 1 and --warmup >= 0, got 0 and 3",
        ),
    ],
)
def test_the_scripts_reject_bad_arguments_in_one_line(script, argv, message, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    module = importlib.import_module(script)

    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_workload_none_of_whose_contenders_runs_is_recorded_as_skipped(tmp_path):
    # equinox has no Elman cell: nothing to time, yet the records and tables come
    # (it divided by zero when rotating the empty order before).
    jsonl = tmp_path / "out.jsonl"
    argv = ["bench", "elman", "--tiny", "--repeats", "1", "--warmup", "0"]
    assert cli.main([*argv, "--contenders", "equinox", "--jsonl", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert "roof" in records[0]  # the machine's matmul rate, measured first
    assert [(r["pass"], r["skipped"]) for r in records[1:]] == [
        ("forward", "equinox has no Elman cell"),
        ("train", "equinox has no Elman cell"),
    ]


def test_the_method_section_states_the_defaults_the_runner_uses(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import run

    text = (Path(bench._RUNNER).parents[1] / "docs" / "benchmarks.md").read_text()
    method = " ".join(text.split("## Method")[1].split("## Results")[0].split())
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    defaults = parser.parse_args([])
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    assert f"Warm-up calls first ({defaults.warmup} by default)" in method
    assert f"timed rounds ({defaults.repeats} by default)" in method
    assert f"{round(run.SETTLE_S * 1e3)} ms of idling" in method
    assert f"one untimed call, then {words[run.BURST]} timed calls" in method


def test_rounds_rotate_the_order_and_time_bursts_after_an_untimed_call(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    import run

    # A fake clock that only the contenders' calls advance, by their own durations.
    clock, log = [0.0], []
    fake_time = type(run.time)("fake_time")
    fake_time.perf_counter = lambda: clock[0]
    fake_time.monotonic = lambda: clock[0]
    fake_time.sleep = lambda s: None
    monkeypatch.setattr(run, "time", fake_time)

    def fake(name, durations):
        durations = iter(durations)

        def call():
            log.append(name)
            clock[0] += next(durations)

        return contenders.Bench(call)

    assert run.BURST == 2
    # Two warm-up calls, then per round one untimed call (100 s: it must not be
    # counted) and two timed ones.
    a = [1.0, 1.0] + [100.0, 1.0, 3.0] * 4
    b = [1.0, 1.0] + [100.0, 2.0, 4.0] * 4
    c = [1.0, 1.0] + [100.0, 5.0, 6.0] * 4
    benches = {"a": fake("a", a), "b": fake("b", b), "c": fake("c", c)}
    samples, summary = run.time_interleaved(benches, repeats=4, warmup=2)

    assert log[:6] == ["a", "a", "b", "b", "c", "c"]  # the warm-up, contender by contender
    assert len(log) == 6 + 4 * 9
    rounds = [log[6 + 9 * i : 6 + 9 * (i + 1)] for i in range(4)]
    orders = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert rounds == [[n for n in order for _ in range(3)] for order in orders]
    assert samples == {"a": [1.0, 3.0] * 4, "b": [2.0, 4.0] * 4, "c": [5.0, 6.0] * 4}
    assert (summary["rounds"], summary["rounds_kept"]) == (4, 4)


def test_a_record_holds_the_median_and_minimum_of_the_timed_calls(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    import run
    from workloads import WORKLOADS, tiny

    monkeypatch.setattr(
        contenders, "build", lambda *args: contenders.Bench(lambda: None, 1.5, 2048, "XLA temp")
    )
    seconds = {"jaxrnn": [0.004, 0.001, 0.002, 0.010], "flax": [0.003, 0.003, 0.009, 0.001]}
    summary = {"rounds": 2, "rounds_kept": 2, "others_cpu": None, "waited_s": 0.0}
    monkeypatch.setattr(run, "time_interleaved", lambda benches, *args: (seconds, summary))
    workload = tiny(WORKLOADS["gru"])
    records = list(run.run_workload(workload, ["jaxrnn", "flax"], "cpu", 2, 0))
    assert [(r["pass"], r["contender"]) for r in records] == [
        ("forward", "jaxrnn"),
        ("forward", "flax"),
        ("train", "jaxrnn"),
        ("train", "flax"),
    ]
    ours, theirs = records[0], records[1]
    assert ours["median_ms"] == pytest.approx(3.0) and ours["min_ms"] == pytest.approx(1.0)
    assert theirs["median_ms"] == pytest.approx(3.0) and theirs["min_ms"] == pytest.approx(1.0)
    assert ours["times_ms"] == [4.0, 1.0, 2.0, 10.0] and ours["burst"] == run.BURST
    assert (ours["compile_s"], ours["memory_bytes"], ours["time"]) == (1.5, 2048, workload.time)


def test_the_tables_put_each_ratio_under_its_peer(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import run

    def timed(workload, pass_, contender, median, times, **extra):
        return {
            "workload": workload,
            "pass": pass_,
            "contender": contender,
            "median_ms": median,
            "times_ms": times,
            "burst": 2,
            **extra,
        }

    records = [
        timed("lstm", "forward", "jaxrnn", 9.0, [9, 9]),  # saved again below: the last counts
        timed("lstm", "forward", "jaxrnn", 2.0, [2, 2], compile_s=0.5),
        timed("lstm", "forward", "pytorch", 4.0, [4, 4]),
        timed("lstm", "forward", "flax", 8.0, [8, 8], compile_s=0.7),
        timed("lstm", "train", "jaxrnn", 3.0, [3, 3], compile_s=1.25, memory_bytes=3 * 2**20),
        timed("lstm", "train", "pytorch", 2.0, [2, 2]),
        {"workload": "lstm", "pass": "train", "contender": "flax", "skipped": "failed: E"},
    ]
    info = {"processor": "p", "cpu_count": 2, "backend": "cpu", "device": "cpu", "jax": "0"}
    lines = run.tables(records, info).splitlines()
    assert "| workload | pass | PyTorch | flax linen |" in lines
    assert "| lstm | forward | 0.50 | 0.25 |" in lines
    assert "| lstm | train | 1.50 | — |" in lines
    assert "| workload | pass | jaxrnn | PyTorch | flax linen |" in lines
    assert "| lstm | forward | 2.00 | 4.00 | 8.00 |" in lines
    assert "| lstm | train | 3.00 | 2.00 | — |" in lines
    assert "| lstm | 1.25 (3.0) | — |" in lines  # the training pass's compile time (MiB)
    assert "Not run: flax linen: failed: E." in lines


def test_the_interquartile_range_of_the_round_ratios_needs_four_rounds(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import run

    ours = {"median_ms": 2.0, "times_ms": [2, 2, 2, 2, 2, 2], "burst": 2}
    theirs = {"median_ms": 4.0, "times_ms": [4, 4, 4, 4, 4, 4], "burst": 2}
    assert run._ratio_cell(ours, theirs) == "0.50"  # three rounds
    ours["times_ms"] += [2, 2]
    theirs["times_ms"] += [4, 4]
    assert run._ratio_cell(ours, theirs) == "0.50 (0.50, 0.50–0.50)"


def test_with_quiet_a_round_others_disturbed_is_set_aside(monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    import run

    clock = [0.0]
    fake_time = type(run.time)("fake_time")
    fake_time.perf_counter = lambda: clock[0]
    fake_time.sleep = lambda s: None
    monkeypatch.setattr(run, "time", fake_time)
    # The shares other processes used: before each round (the wait), then during it.
    shares = iter([0.0, 0.5, 0.0, 0.0, 0.0, 0.02])

    class Others:
        def stop(self):
            return next(shares)

    monkeypatch.setattr(run, "OthersCPU", Others)
    durations = iter([1.0] + [100.0, 9.0, 9.0] + [100.0, 2.0, 2.0] * 2)  # warm-up, rounds

    def call():
        clock[0] += next(durations)

    benches = {"a": contenders.Bench(call)}
    samples, summary = run.time_interleaved(benches, repeats=2, warmup=1, quiet=0.05)
    assert samples == {"a": [2.0, 2.0, 2.0, 2.0]}  # the disturbed round's 9s are set aside
    assert summary == {"rounds": 3, "rounds_kept": 2, "others_cpu": 0.01, "waited_s": 18.0}


@pytest.mark.parametrize("kind", ["lstm", "gru", "elman"])
def test_every_peer_computes_jaxrnns_layer_given_its_weights(kind, monkeypatch):
    # Fairness: the same sizes, the same function, gradients of the same loss
    # with respect to the same weights (PyTorch's second bias aside).
    import jax.numpy as jnp
    import numpy as np

    import jaxrnn
    from jaxrnn.interop.flax_linen import from_flax, to_flax

    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import contenders
    from workloads import WORKLOADS, tiny

    w = tiny(WORKLOADS[kind])
    data = w.inputs()
    xs = jnp.asarray(data["xs"])

    def value_and_grad(forward, params):
        return forward(params, xs), jax.grad(lambda p: jnp.sum(forward(p, xs)))(params)

    params, forward = contenders._jaxrnn_layer(w, fused=True)
    ys, grads = value_and_grad(forward, params)
    close = {"rtol": 1e-5, "atol": 1e-5}

    _, autodiff = contenders._jaxrnn_layer(w, fused=False)
    ys_a, grads_a = value_and_grad(autodiff, params)
    np.testing.assert_allclose(ys_a, ys, **close)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **close), grads_a, grads)

    cell = {"lstm": jaxrnn.lstm, "gru": jaxrnn.gru, "elman": jaxrnn.elman}[kind](w.hidden_size)
    theirs, flax_forward = contenders._flax_layer(w, fused=False)
    flax_cell, variables = to_flax(cell, params)
    mapped = {"params": {"cell": variables["params"]}}
    assert jax.tree.structure(mapped) == jax.tree.structure(theirs)
    ys_f, grads_f = value_and_grad(flax_forward, mapped)
    np.testing.assert_allclose(ys_f, ys, **close)
    _, grads_f = from_flax(flax_cell, {"params": grads_f["params"]["cell"]})
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **close), grads_f, grads)

    if kind != "elman":
        import equinox as eqx

        theirs, eqx_forward = contenders._equinox_layer(w, fused=False)
        mapped = eqx.tree_at(
            lambda c: (c.weight_ih, c.weight_hh, c.bias),
            theirs,
            (params.w_ih.T, params.w_hh.T, params.b),
        )
        if kind == "gru":
            mapped = eqx.tree_at(lambda c: c.bias_n, mapped, params.b_hn)
        ys_e, g = value_and_grad(eqx_forward, mapped)
        np.testing.assert_allclose(ys_e, ys, **close)
        extra = [g.bias_n] if kind == "gru" else []
        for a, b in zip([g.weight_ih.T, g.weight_hh.T, g.bias, *extra], grads, strict=True):
            np.testing.assert_allclose(a, b, **close)

    torch = pytest.importorskip("torch")
    from jaxrnn.interop.pytorch import to_torch

    module = to_torch(jaxrnn.StackedRNN(cell), ((params,),))
    layer_type = type(module)
    monkeypatch.setattr(torch.nn, layer_type.__name__, lambda *args, **kwargs: module)
    contenders.build("pytorch", w, data, "train").call()  # the gradient of sum(ys)
    np.testing.assert_allclose(module.weight_ih_l0.grad.numpy().T, grads.w_ih, **close)
    np.testing.assert_allclose(module.weight_hh_l0.grad.numpy().T, grads.w_hh, **close)
    if grads.b is not None:
        np.testing.assert_allclose(module.bias_ih_l0.grad.numpy()[: len(grads.b)], grads.b, **close)


# --------------------------------------------------------------------------- output files

INFO = {"processor": "p", "cpu_count": 2, "backend": "cpu", "device": "cpu", "jax": "0"}


def a_result(median_ms):
    return {
        "workload": "elman",
        "pass": "forward",
        "contender": "jaxrnn",
        "median_ms": median_ms,
        "times_ms": [median_ms, median_ms],
        "burst": 2,
    }


@pytest.fixture
def fake_suite(monkeypatch):
    """The runner with a machine and a workload that take no time: each run yields one
    result, 1 ms the first time, 2 ms the next, ...; the list of the runs so far."""
    runner = bench._runner()
    runs = []

    def run_workload(*args):
        runs.append(len(runs) + 1)
        yield a_result(float(runs[-1]))

    monkeypatch.setattr(runner, "machine", lambda: INFO)
    monkeypatch.setattr(runner, "run_workload", run_workload)
    roof = {"roof": "float32 matmul", "size": 2048, "gflops": {"jnp.dot": 100.0}}
    monkeypatch.setattr(runner, "matmul_roof", lambda backend, size: roof)
    return runs


SUITE = ["bench", "elman", "--contenders", "jaxrnn"]


def test_the_output_files_are_appended_to_and_replaced_only_by_their_own_kind(tmp_path, fake_suite):
    jsonl, markdown = tmp_path / "r.jsonl", tmp_path / "r.md"
    markdown.touch()  # an empty file holds nothing: written
    assert cli.main([*SUITE, "--jsonl", str(jsonl), "--markdown", str(markdown)]) == 0
    first = markdown.read_text(encoding="utf-8")
    assert "| elman | forward | 1.00 |" in first
    # Again: the results appended, the earlier table replaced (as gpu_session.sh writes
    # gpu.md twice: after the run, and with --tables-from).
    assert cli.main([*SUITE, "--jsonl", str(jsonl), "--markdown", str(markdown)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r.get("median_ms", "roof") for r in records] == ["roof", 1.0, "roof", 2.0]
    assert "| elman | forward | 2.00 |" in markdown.read_text(encoding="utf-8")
    assert cli.main(["bench", "--tables-from", str(jsonl), "--markdown", str(markdown)]) == 0
    assert "| elman | forward | 2.00 |" in markdown.read_text(encoding="utf-8")
    # A results file whose last line lost its newline (edited by hand) gets one first.
    jsonl.write_text(jsonl.read_text().rstrip("\n"))
    assert cli.main([*SUITE, "--jsonl", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["median_ms"] for r in records if "roof" not in r] == [1.0, 2.0, 3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.md"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--markdown", "{notes}"],
            "--markdown {notes} exists and is not a table of this suite (it begins '# Notes'",
        ),
        (["--jsonl", "{notes}"], "--jsonl: line 1 of {notes} is not JSON"),
        (["--jsonl", "{metrics}"], "--jsonl: {metrics} holds no results written by --jsonl"),
        (
            ["--jsonl", "{tmp}/new.md", "--markdown", "{tmp}/new.md"],
            "--jsonl and --markdown are both {tmp}/new.md",
        ),
        (
            ["--tables-from", "{results}", "--markdown", "{notes}"],
            "--markdown {notes} exists and is not a table of this suite",
        ),
        # The tables over the results they were made from.
        (
            ["--tables-from", "{results}", "--markdown", "{results}"],
            "--markdown {results} exists and is not a table of this suite (it begins '{{",
        ),
        (["--markdown", "/dev/null"], "--markdown /dev/null is not a regular file"),
    ],
)
def test_a_users_other_file_is_refused_before_the_suite_runs(
    flags, message, tmp_path, fake_suite, capsys
):
    files = {
        "notes": "# Notes\n\nkeep these\n",
        "metrics": '{"step": 100, "val_bpc": 2.5}\n',
        "results": json.dumps({**a_result(1.0), "machine": INFO}) + "\n",
    }
    paths = {name: tmp_path / f"{name}{'.md' if name == 'notes' else '.jsonl'}" for name in files}
    for name, text in files.items():
        paths[name].write_text(text)
    names = {**paths, "tmp": tmp_path}
    argv = [flag.format(**names) for flag in flags]
    assert cli.main(["bench", *argv] if "--tables-from" in argv else [*SUITE, *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err
    assert err.count("\n") == 1
    assert fake_suite == []  # refused before the suite ran
    assert {name: paths[name].read_text() for name in files} == files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_a_failed_write_of_the_tables_leaves_the_earlier_table_whole(
    tmp_path, fake_suite, monkeypatch
):
    jsonl, markdown = tmp_path / "r.jsonl", tmp_path / "r.md"
    assert cli.main([*SUITE, "--jsonl", str(jsonl), "--markdown", str(markdown)]) == 0
    earlier = markdown.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cli.main(["bench", "--tables-from", str(jsonl), "--markdown", str(markdown)])
    assert markdown.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.md"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("notes.md", "# Notes\n", "--out {out} exists and is not this script's results"),
        ("m.jsonl", '{"step": 1}\n', "--out {out} exists and is not this script's results"),
        ("", None, "--out {out}: a file in an existing folder expected"),
        ("no/such/r.jsonl", None, "--out {out}: a file in an existing folder expected"),
    ],
)
def test_bench_optim_refuses_an_out_it_would_destroy_before_it_runs(
    name, text, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import bench_optim

    def ran(*args):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(bench_optim, "make_params", ran)
    out = tmp_path / name
    if text is not None:
        out.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        bench_optim.main(["--out", str(out)])
    assert exit_.value.code == 2
    assert message.format(out=out) in capsys.readouterr().err
    if text is not None:
        assert out.read_text() == text


def test_bench_optim_replaces_its_own_results_whole(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(bench._RUNNER.parent))
    import bench_optim

    out = tmp_path / "optim.jsonl"
    argv = ["--out", str(out), "--only", "sgd", "--params", "1e5", "--warmup", "0"]
    bench_optim.main([*argv, "--repeats", "1"])
    earlier = out.read_text()
    records = [json.loads(line) for line in earlier.splitlines()]
    assert [(r["optimizer"], r["library"]) for r in records] == [
        ("sgd", "jaxrnn"),
        ("sgd", "optax"),
    ]

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="No space left"):
            bench_optim.main([*argv, "--repeats", "2"])
    assert out.read_text() == earlier  # a failed write leaves the earlier results whole
    assert [p.name for p in tmp_path.iterdir()] == ["optim.jsonl"]
    bench_optim.main([*argv, "--repeats", "2"])
    assert [json.loads(line)["repeats"] for line in out.read_text().splitlines()] == [2, 2]

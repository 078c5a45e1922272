"""The recurrent-layer benchmarks: jaxrnn against PyTorch, flax, equinox and cuDNN.

    python benchmarks/run.py                        # every workload this machine runs
    python benchmarks/run.py lstm gru --repeats 30  # some workloads
    python benchmarks/run.py --jsonl out.jsonl --markdown out.md
    python benchmarks/run.py --tables-from out.jsonl  # the tables again, running nothing
    jaxrnn bench ...                                # the same, from the jaxrnn command

Method: for each workload and pass (``forward``, ``train``) every contender is
built and compiled first (compile time reported apart), warmed up, then timed
in rounds with the contenders interleaved (each runs a burst of ``BURST`` timed
calls per round; the order rotates every round), so that a busy or drifting
machine hits them alike; each call waits for its result
(``block_until_ready``, ``torch.cuda.synchronize``). The median of the timed
calls is reported. Output: one JSON object per line (machine, versions,
sizes, times) and markdown tables of the ratios jaxrnn / peer (below 1:
jaxrnn is faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders as contenders_module
import numpy as np
from workloads import WORKLOADS, Workload, tiny

from jaxrnn.checkpoint import write_atomically
from jaxrnn.cli import CommandError

__all__ = ["add_arguments", "main", "run"]

DEFAULT_CONTENDERS = (
    "jaxrnn",
    "pytorch",
    "flax",
    "equinox",
    "jaxrnn-xla",
    "jaxrnn-autodiff",
    "jax-cudnn",
    "pytorch-aten",
)
BURST = 2  # timed calls per contender per round, after one untimed call
FAILED = "failed:"  # how a contender's record says it failed to build or run
SETTLE_S = 0.03  # idle time before each contender's burst
ROOF_SIZE = 2048  # the square float32 matmul whose rate a pass's matmul rate is read against
PEERS_IN_TABLE = (
    "pytorch",
    "flax",
    "equinox",
    "jax-cudnn",
    "jaxrnn-xla",
    "jaxrnn-autodiff",
    "pytorch-aten",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, shared by this script and ``jaxrnn bench``."""
    parser.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"workloads to run (default: all this backend runs): {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help="comma-separated contenders (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    parser.add_argument(
        "--quiet",
        type=float,
        metavar="SHARE",
        help="on a shared machine: wait before each round until other processes use at most "
        "this share of the cores (e.g. 0.05), and set aside rounds they disturbed",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with --quiet: wait at most this long per workload and pass (default: 600)",
    )
    parser.add_argument(
        "--jsonl",
        type=Path,
        help="append one JSON object per result here (a new file, or one that --jsonl wrote)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help="write the tables here as well (a new file, or one that --markdown wrote: an "
        "earlier table is replaced, any other file refused)",
    )
    parser.add_argument(
        "--compile-scaling",
        action="store_true",
        help="also compile jaxrnn's and flax's LSTM, GRU and Elman training passes at several T",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="toy sizes and XLA's backend optimisations off, to smoke-test the harness (the "
        "times mean nothing)",
    )
    parser.add_argument(
        "--tables-from",
        type=Path,
        metavar="JSONL",
        help="run nothing: the tables of the results a run saved with --jsonl (one cut short "
        "too; of a result saved twice, the last), printed and with --markdown written",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What ran the benchmark: processor, cores, accelerator, versions, load."""
    import jax

    from jaxrnn import blas

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxrnn_blas": blas.status(),
    }
    for module in ("torch", "flax", "equinox", "optax"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    if info["torch"] is not None:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class OthersCPU:
    """The share of the machine's cores other processes used between ``start`` and ``stop``.

    Read from ``/proc/stat`` (all processes) minus this process's own CPU time;
    ``None`` where ``/proc/stat`` does not exist. A shared machine slows every
    contender, PyTorch's OpenMP threads most, so the results record it.
    """

    def __init__(self) -> None:
        self.begin = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return busy, usage.ru_utime + usage.ru_stime, time.monotonic()

    def stop(self) -> float | None:
        end = self._read()
        if self.begin is None or end is None:
            return None
        busy, own, wall = (e - b for e, b in zip(end, self.begin, strict=True))
        return round(max(0.0, busy - own) / (wall * (os.cpu_count() or 1)), 3)


# --------------------------------------------------------------------------- timing


def time_interleaved(
    benches: dict[str, Any],
    repeats: int,
    warmup: int,
    quiet: float | None = None,
    max_wait: float = 600.0,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per call of each bench, the benches interleaved and their order rotating.

    Each round gives every bench a burst, after ``SETTLE_S`` seconds of idling:
    one untimed call, then ``BURST`` timed ones. With ``quiet`` (a share of the
    machine's cores), each round waits until other processes use at most that
    share, and a round during which they used
    more is set aside, until ``repeats`` quiet rounds are in; after ``max_wait``
    seconds of waiting in all, the rounds run as they come and all of them count.
    Returns the samples and a summary of the rounds.
    """
    names = list(benches)
    if not names:  # every contender skipped or failed: nothing to time
        return {}, {"rounds": 0, "rounds_kept": 0, "others_cpu": None, "waited_s": 0.0}
    for bench in benches.values():
        for _ in range(warmup):
            bench.call()
    kept: list[dict[str, list[float]]] = []
    shares: list[float] = []
    rounds, waited = 0, 0.0
    while len(kept) < repeats:
        patient = quiet is not None and waited < max_wait
        while patient:
            probe = OthersCPU()
            time.sleep(0.5)
            share = probe.stop()
            if share is None or share <= quiet:
                break
            waited += 0.5
            patient = waited < max_wait
        shift = rounds % len(names)
        others, times = OthersCPU(), {}
        for name in names[shift:] + names[:shift]:
            # Let the previous contender's threads go idle first: PyTorch's OpenMP
            # workers spin for about 10 ms after each call, taking a core from
            # whoever runs next. Then a burst: one untimed call (caches, clocks),
            # and BURST timed ones.
            time.sleep(SETTLE_S)
            benches[name].call()
            burst = []
            for _ in range(BURST):
                start = time.perf_counter()
                benches[name].call()
                burst.append(time.perf_counter() - start)
            times[name] = burst
        share = others.stop()
        rounds += 1
        if patient and share is not None and share > quiet:
            waited += sum(map(sum, times.values()))  # disturbed: set aside, count as waiting
            continue
        kept.append(times)
        if share is not None:
            shares.append(share)
    summary = {
        "rounds": rounds,
        "rounds_kept": len(kept),
        "others_cpu": round(statistics.median(shares), 3) if shares else None,
        "waited_s": round(waited, 1),
    }
    return {name: [s for t in kept for s in t[name]] for name in names}, summary


def run_workload(
    workload: Workload,
    names: list[str],
    backend: str,
    repeats: int,
    warmup: int,
    quiet: float | None = None,
    max_wait: float = 600.0,
) -> Iterator[dict[str, Any]]:
    """Times every available contender on both passes of ``workload``: one record each,
    yielded as each pass ends."""
    data = workload.inputs()
    for pass_ in contenders_module.PASSES:
        benches, skipped = {}, {}
        for name in names:
            reason = contenders_module.unavailable(name, workload, backend)
            if reason is not None:
                skipped[name] = reason
                continue
            try:  # one contender that fails (a library's bug, a missing kernel) spoils no other
                bench = contenders_module.build(name, workload, data, pass_)
                bench.call()
            except Exception as error:  # recorded, and run() exits with 1
                skipped[name] = f"{FAILED} {type(error).__name__}: {str(error)[:300]}"
                print(f"# {workload.name} {pass_} {name}: {skipped[name]}", file=sys.stderr)
            else:
                benches[name] = bench
        samples, summary = time_interleaved(benches, repeats, warmup, quiet, max_wait)
        for name, bench in benches.items():
            times_ms = [1e3 * s for s in samples[name]]
            yield {
                "workload": workload.name,
                "pass": pass_,
                "contender": name,
                **workload.sizes,
                "median_ms": statistics.median(times_ms),
                "min_ms": min(times_ms),
                "times_ms": [round(t, 4) for t in times_ms],
                "burst": BURST,
                "compile_s": bench.compile_s,
                "memory_bytes": bench.memory_bytes,
                "memory_kind": bench.memory_kind,
                **summary,
            }
        for name, reason in skipped.items():
            yield {"workload": workload.name, "pass": pass_, "contender": name, "skipped": reason}


def matmul_roof(backend: str, size: int = ROOF_SIZE, repeats: int = 10) -> dict[str, Any]:
    """The rate, GFLOP/s, of one (size, size) x (size, size) float32 matmul here through
    each library the contenders multiply with: XLA's dot (flax, equinox), jaxrnn.blas
    (jaxrnn's CPU kernels) and PyTorch's ``torch.mm`` (with all its threads); the best
    of ``repeats`` calls after one untimed call (a ceiling: a busy machine only slows a
    call). The fastest is the machine's matmul rate that the tables read each pass's
    rate against.

    Examples:
      >>> roof = matmul_roof("cpu", size=64, repeats=2)
      >>> roof["roof"], roof["size"], "jnp.dot" in roof["gflops"]
      ('float32 matmul', 64, True)
      >>> matmul_roof("cpu", size=0)
      Traceback (most recent call last):
      ValueError: size and repeats must be at least 1, got 0 and 10
    """
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be at least 1, got {size} and {repeats}")
    import jax
    import jax.numpy as jnp

    from jaxrnn import blas

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a_jax, b_jax = jax.device_put(a), jax.device_put(b)
    dot = jax.jit(jnp.dot)
    calls = {"jnp.dot": lambda: dot(a_jax, b_jax).block_until_ready()}
    if backend == "cpu" and blas.active(np.float32):
        product = jax.jit(blas.matmul)
        calls["jaxrnn.blas"] = lambda: product(a_jax, b_jax).block_until_ready()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and (backend != "gpu" or torch.cuda.is_available()):
        device = "cuda" if backend == "gpu" else "cpu"
        a_torch, b_torch = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)

        def mm() -> None:
            torch.mm(a_torch, b_torch)
            if device == "cuda":
                torch.cuda.synchronize()

        calls["torch.mm"] = mm
    gflops = {}
    for name, call in calls.items():
        call()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        gflops[name] = round(2 * size**3 / min(seconds) / 1e9, 1)
    return {"roof": "float32 matmul", "size": size, "gflops": gflops}


def matmul_rate(record: dict[str, Any]) -> float | None:
    """The GFLOP/s of a timed record's matrix products (``Workload.matmul_flops`` at the
    record's sizes over its median time); ``None`` for a workload this suite lacks.

    Examples:
      >>> matmul_rate({"workload": "lstm", "pass": "forward", "median_ms": 16.0})
      157.2864
      >>> matmul_rate({"workload": "mine", "pass": "forward", "median_ms": 1.0}) is None
      True
    """
    workload = WORKLOADS.get(record["workload"])
    if workload is None or "median_ms" not in record:
        return None
    sized = dataclasses.replace(workload, **{k: record[k] for k in workload.sizes if k in record})
    return sized.matmul_flops(record["pass"]) / (record["median_ms"] * 1e6)


# The cells whose one-layer training pass the compile-time sweep compiles.
SCALING_CELLS = ("lstm", "gru", "elman")


def compile_scaling(
    times: tuple[int, ...] = (25, 100, 400, 1600), *, hidden: int = 256, inputs: int = 128
) -> Iterator[dict[str, Any]]:
    """Compile seconds of each cell's one-layer training pass (B=32, I=128, H=256 by
    default) at several T, jaxrnn's and flax's, one record at a time."""
    for cell in SCALING_CELLS:
        for t in times:
            workload = Workload(f"{cell}-T{t}", cell, t, 32, inputs, hidden)
            data = workload.inputs()
            for name in ("jaxrnn", "flax"):
                if contenders_module.unavailable(name, workload, "cpu") is None:
                    record = {"compile_scaling": t, "cell": cell, "contender": name}
                    try:  # as in run_workload: recorded, and run() exits with 1
                        bench = contenders_module.build(name, workload, data, "train")
                    except Exception as error:
                        record["skipped"] = f"{FAILED} {type(error).__name__}: {str(error)[:300]}"
                        print(f"# {workload.name} {name}: {record['skipped']}", file=sys.stderr)
                    else:
                        record["compile_s"] = bench.compile_s
                    yield record


# --------------------------------------------------------------------------- tables


def _ms(record: dict[str, Any] | None) -> str:
    return "—" if record is None or "median_ms" not in record else f"{record['median_ms']:.2f}"


def round_ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> list[float]:
    """jaxrnn / peer in each timed round, from two records of one ``run_workload`` call.

    ``times_ms`` holds each kept round's burst in order, so round ``r`` of both
    contenders ran within seconds of each other: the ratio of their burst
    medians sees the same state of the machine, and the spread of these ratios
    says how much the one-run ratio can be trusted.
    """
    burst = ours.get("burst", BURST)
    a, b = ours["times_ms"], theirs["times_ms"]
    rounds = min(len(a), len(b)) // burst
    return [
        statistics.median(a[r * burst : (r + 1) * burst])
        / statistics.median(b[r * burst : (r + 1) * burst])
        for r in range(rounds)
    ]


def _ratio_cell(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """``ratio of the medians (median, interquartile range of the per-round ratios)``."""
    cell = f"{ours['median_ms'] / theirs['median_ms']:.2f}"
    per_round = round_ratios(ours, theirs)
    if len(per_round) >= 4:
        q1, q2, q3 = statistics.quantiles(per_round, n=4)
        cell += f" ({q2:.2f}, {q1:.2f}–{q3:.2f})"
    return cell


def tables(
    records: list[dict[str, Any]], info: dict[str, Any], not_run: dict[str, str] | None = None
) -> str:
    """Markdown: ratios jaxrnn / peer, median times, compile times and memory."""
    found = {(r["workload"], r["pass"], r["contender"]): r for r in records if "pass" in r}
    rows = sorted({(r["workload"], r["pass"]) for r in records if "pass" in r}, key=_row_order)
    peers = [
        p for p in PEERS_IN_TABLE if any(k[2] == p and "median_ms" in v for k, v in found.items())
    ]
    label = contenders_module.CONTENDERS
    lines = [
        f"Machine: {info['processor']}, {info['cpu_count']} cores, backend {info['backend']} "
        f"({info['device']}); jax {info['jax']}, torch {info.get('torch')}, flax "
        f"{info.get('flax')}, equinox {info.get('equinox')}. Medians of interleaved rounds.",
        "",
        "Ratio of times, jaxrnn / peer (below 1.00: jaxrnn is faster): the ratio of the",
        "median times, then in brackets (from 4 rounds on) the median and interquartile",
        "range of the ratios within each round, where both ran seconds apart.",
        "",
        "| workload | pass | " + " | ".join(label[p] for p in peers) + " |",
        "|---|---|" + "---:|" * len(peers),
    ]
    for workload, pass_ in rows:
        ours = found.get((workload, pass_, "jaxrnn"))
        cells = []
        for peer in peers:
            theirs = found.get((workload, pass_, peer))
            if (
                ours is None
                or theirs is None
                or "median_ms" not in theirs
                or "median_ms" not in ours
            ):
                cells.append("—")
            else:
                cells.append(_ratio_cell(ours, theirs))
        lines.append(f"| {workload} | {pass_} | " + " | ".join(cells) + " |")

    everyone = ["jaxrnn", *peers]
    lines += [
        "",
        "Median time per call, ms:",
        "",
        "| workload | pass | " + " | ".join(label[p] for p in everyone) + " |",
        "|---|---|" + "---:|" * len(everyone),
    ]
    for workload, pass_ in rows:
        cells = [_ms(found.get((workload, pass_, p))) for p in everyone]
        lines.append(f"| {workload} | {pass_} | " + " | ".join(cells) + " |")

    roof = next((r for r in reversed(records) if "roof" in r), None)
    if roof is not None and roof["gflops"]:
        best = max(roof["gflops"], key=roof["gflops"].get)
        top = roof["gflops"][best]
        lines += [
            "",
            "Rate of the matrix products, GFLOP/s: a pass's matmul FLOPs (the work none",
            "can skip: Workload.matmul_flops) over its median time, in brackets the share",
            f"of this machine's float32 matmul rate ({top:.0f} GFLOP/s: {best}, "
            f"{roof['size']}x{roof['size']}; "
            + ", ".join(f"{name} {rate:.0f}" for name, rate in roof["gflops"].items())
            + ").",
            "",
            "| workload | pass | " + " | ".join(label[p] for p in everyone) + " |",
            "|---|---|" + "---:|" * len(everyone),
        ]
        for workload, pass_ in rows:
            cells = []
            for name in everyone:
                record = found.get((workload, pass_, name))
                rate = None if record is None else matmul_rate(record)
                cells.append("—" if rate is None else f"{rate:.0f} ({rate / top:.0%})")
            lines.append(f"| {workload} | {pass_} | " + " | ".join(cells) + " |")

    # The contenders that compile (PyTorch's records hold no compile time).
    jax_names = [
        p
        for p in everyone
        if any(r.get("compile_s") is not None for k, r in found.items() if k[2] == p)
    ]
    lines += [
        "",
        "Compile time of the training pass, s (XLA temporary memory, MiB):",
        "",
        "| workload | " + " | ".join(label[p] for p in jax_names) + " |",
        "|---|" + "---:|" * len(jax_names),
    ]
    for workload in dict.fromkeys(w for w, _ in rows):
        cells = []
        for name in jax_names:
            record = found.get((workload, "train", name))
            if record is None or record.get("compile_s") is None:
                cells.append("—")
                continue
            memory = record.get("memory_bytes")
            mib = "" if memory is None else f" ({memory / 2**20:.1f})"
            cells.append(f"{record['compile_s']:.2f}{mib}")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")

    scaling = [r for r in records if "compile_scaling" in r and "compile_s" in r]
    if scaling:
        steps = sorted({r["compile_scaling"] for r in scaling})
        lines += [
            "",
            "Compile time of a layer's training pass against T, s:",
            "",
            "| cell | contender | " + " | ".join(f"T={t}" for t in steps) + " |",
            "|---|---|" + "---:|" * len(steps),
        ]
        for cell in dict.fromkeys(r["cell"] for r in scaling):
            for name in dict.fromkeys(r["contender"] for r in scaling if r["cell"] == cell):
                by_t = {
                    r["compile_scaling"]: r["compile_s"]
                    for r in scaling
                    if r["contender"] == name and r["cell"] == cell
                }
                cells = [f"{by_t[t]:.2f}" if t in by_t else "—" for t in steps]
                lines.append(f"| {cell} | {label[name]} | " + " | ".join(cells) + " |")
    timed = [r for r in records if "median_ms" in r]
    shares = [r["others_cpu"] for r in timed if r.get("others_cpu") is not None]
    if shares and max(shares) > 0.02:
        lines += [
            "",
            f"The machine was shared: in the rounds reported, other processes used a median "
            f"{100 * statistics.median(shares):.0f}% (at most {100 * max(shares):.0f}%) of its "
            "cores. PyTorch's OpenMP threads suffer most from that.",
        ]
    dropped = sum(r["rounds"] - r["rounds_kept"] for r in timed if "rounds" in r)
    if dropped:
        lines += [
            "",
            f"Rounds set aside because other processes were busy (--quiet): {dropped} of "
            f"{sum(r['rounds'] for r in timed if 'rounds' in r)}.",
        ]
    skipped = sorted({(r["contender"], r["skipped"]) for r in records if "skipped" in r})
    if skipped:
        lines += ["", "Not run: " + "; ".join(f"{label[n]}: {why}" for n, why in skipped) + "."]
    if not_run:
        reasons = "; ".join(f"{w}: {why}" for w, why in not_run.items())
        lines += ["", f"Workloads not run: {reasons}."]
    return "\n".join(lines) + "\n"


def _row_order(row: tuple[str, str]) -> tuple[int, int]:
    names = list(WORKLOADS)
    workload = row[0]
    return (names.index(workload) if workload in names else len(names), row[1] != "forward")


# --------------------------------------------------------------------------- entry points


def run(args: argparse.Namespace) -> int:
    """Runs the benchmarks ``args`` name; prints JSON lines, then the tables."""
    if args.list:
        for workload in WORKLOADS.values():
            sizes = ", ".join(f"{k}={v}" for k, v in workload.sizes.items())
            print(f"{workload.name:16s} {workload.about} ({sizes})")
        return 0
    if args.tables_from is not None:
        if args.markdown is not None:
            _check_markdown(args.markdown)
        return _tables_from(args.tables_from, args.markdown)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        raise CommandError(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)} "
            "(or run with --list)."
        )
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    bad = [n for n in names if n not in contenders_module.CONTENDERS]
    if bad:
        raise CommandError(
            f"unknown contender(s) {', '.join(bad)}; choose from "
            f"{', '.join(contenders_module.CONTENDERS)}."
        )
    if args.repeats < 1 or args.warmup < 0:
        raise CommandError(
            f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}."
        )
    if args.quiet is not None and not 0 <= args.quiet < 1:
        raise CommandError(f"--quiet is a share of the cores in [0, 1), got {args.quiet}.")

    # The output files, checked before the suite runs: appended to or replaced only
    # where they hold this suite's own results or tables, never a user's other file.
    both = args.jsonl is not None and args.markdown is not None
    if both and args.jsonl.resolve() == args.markdown.resolve():
        raise CommandError(
            f"--jsonl and --markdown are both {args.jsonl}; the tables would replace the "
            "results. Pass two files."
        )
    glue = False  # a --jsonl file whose last line lacks its newline: give it one first
    if args.jsonl is not None:
        glue = _check_jsonl(args.jsonl)
    if args.markdown is not None:
        _check_markdown(args.markdown)

    info = machine()
    backend = info["backend"]
    if args.workloads:
        chosen = [WORKLOADS[w] for w in args.workloads]
        if backend != "gpu" and any(w.gpu_only for w in chosen) and not args.tiny:
            raise CommandError("lstm-long runs on a GPU only (this backend is " + backend + ").")
    else:
        chosen = [w for w in WORKLOADS.values() if backend == "gpu" or not w.gpu_only]
    not_run = {
        w.name: f"GPU only, and this backend is {backend}"
        for w in WORKLOADS.values()
        if w not in chosen and w.gpu_only and not args.workloads
    }
    for name, why in not_run.items():
        print(f"# {name}: not run ({why})", file=sys.stderr, flush=True)
    if args.tiny:
        chosen = [tiny(w) for w in chosen]
        contenders_module.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0

    # Every record is written the moment it is measured: a run cut short keeps them.
    records: list[dict[str, Any]] = []
    out = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    if out is not None and glue:
        out.write("\n")

    def emit(record: dict[str, Any]) -> None:
        line = json.dumps({**record, "machine": info})
        print(line, flush=True)
        if out is not None:
            print(line, file=out, flush=True)
        records.append(record)

    try:
        emit(matmul_roof(backend, 256 if args.tiny else ROOF_SIZE))
        for workload in chosen:
            print(f"# {workload.name}: {workload.about}", file=sys.stderr, flush=True)
            for record in run_workload(
                workload, names, backend, args.repeats, args.warmup, args.quiet, args.max_wait
            ):
                emit(record)
        if args.compile_scaling:
            sweep = compile_scaling((5, 10), hidden=8, inputs=4) if args.tiny else compile_scaling()
            for record in sweep:
                emit(record)
    finally:
        if out is not None:
            out.close()
    text = tables(records, info, not_run)
    print("\n" + text)
    if args.markdown:
        _write_markdown(args.markdown, text)
    failed = [r for r in records if r.get("skipped", "").startswith(FAILED)]
    for r in failed:
        where = (
            f"{r['workload']} {r['pass']}"
            if "workload" in r
            else f"{r['cell']}-T{r['compile_scaling']}"
        )
        print(f"{where} {r['contender']}: {r['skipped']}", file=sys.stderr)
    return 1 if failed else 0


def _parse_results(text: str, name: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The records of JSON lines as ``--jsonl`` writes them, and what keeps ``text`` (the
    file ``name``) from being such a file: ``None`` if nothing does."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return records, f"line {number} of {name} is not JSON"
        if not isinstance(record, dict):
            return records, f"line {number} of {name} is not a JSON object"
        records.append(record)
    if not records or "machine" not in records[-1]:
        return records, f"{name} holds no results written by --jsonl"
    return records, None


def _check_place(flag: str, path: Path) -> None:
    """Refuses an output ``path`` that is a folder or lies in no existing folder."""
    if path.is_dir() or not path.parent.is_dir():
        raise CommandError(
            f"{flag} {path}: a file in an existing folder expected (checked before the suite runs)."
        )


def _check_jsonl(path: Path) -> bool:
    """Refuses a ``--jsonl`` file the run could not append to, or should not: a folder, a
    file in no folder, or a file that holds anything but the results of earlier runs
    (as ``--tables-from`` reads them). Returns whether its last line lacks a newline."""
    _check_place("--jsonl", path)
    if not path.is_file():  # nothing there, or a pipe or device (/dev/null): nothing saved
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(
            f"--jsonl {path}: cannot read it ({getattr(error, 'strerror', None) or error}) to "
            "check that it holds earlier results; pass another file."
        ) from None
    if not text.strip():
        return bool(text) and not text.endswith("\n")
    _, problem = _parse_results(text, path)
    if problem is not None:
        raise CommandError(
            f"--jsonl: {problem}; the run appends to the JSON lines that --jsonl writes, "
            "never to another file. Pass another file, or move that one away."
        )
    return not text.endswith("\n")


_TABLE_LINES = ("Machine: ", "", "Ratio of times, jaxrnn / peer")
"""How the text ``tables`` writes begins: the only files ``--markdown`` replaces."""


def _check_markdown(path: Path) -> None:
    """Refuses a ``--markdown`` file that cannot be written, or that holds anything but
    an earlier table of this suite (an empty file aside): ``--markdown`` replaces it."""
    _check_place("--markdown", path)
    if not path.exists():
        return
    if not path.is_file():
        raise CommandError(
            f"--markdown {path} is not a regular file (a pipe or a device); pass a file name "
            "(the tables are printed as well)."
        )
    if path.stat().st_size == 0:
        return
    try:
        with path.open(encoding="utf-8") as file:
            head = [file.readline() for _ in _TABLE_LINES]
    except (OSError, UnicodeDecodeError):
        head = []
    ours = len(head) == len(_TABLE_LINES) and all(
        line.startswith(start) and (start or not line.strip())
        for line, start in zip(head, _TABLE_LINES, strict=True)
    )
    if not ours:
        first = head[0].strip()[:40] if head else ""
        raise CommandError(
            f"--markdown {path} exists and is not a table of this suite (it begins "
            f"{first!r}, not 'Machine: ...'); it would be replaced. Pass another file, or "
            "move that one away."
        )


def _write_markdown(path: Path, text: str) -> None:
    """Writes the tables to ``path`` atomically: a run killed meanwhile leaves the earlier
    table whole. Checked again first: the file may have appeared while the suite ran."""
    _check_markdown(path)
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _tables_from(jsonl: Path, markdown: Path | None) -> int:
    """The tables of the records saved in ``jsonl``, on the machine of the last."""
    try:
        text = jsonl.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"--tables-from: cannot read {jsonl}: {error.strerror}.") from None
    except UnicodeDecodeError:
        raise CommandError(f"--tables-from: cannot read {jsonl}: not UTF-8 text.") from None
    records, problem = _parse_results(text, jsonl)
    if problem is not None:
        raise CommandError(
            f"--tables-from: {problem}; expected the JSON lines that --jsonl writes."
        )
    text = tables(records, records[-1]["machine"])
    print(text)
    if markdown:
        _write_markdown(markdown, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

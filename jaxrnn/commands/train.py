"""``jaxrnn train``: train a character language model on a text file or the embedded corpus."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import jax

from jaxrnn import baselines, checkpoint, data, parallel
from jaxrnn import train as training
from jaxrnn.cli import CommandError, _seed, _writable_folder
from jaxrnn.recurrent import _quiet_single_layer_dropout

NAME = "train"
HELP = "train a character-level language model (LSTM, GRU or Elman) on a text"

# Flags that define the model or the batching: a resumed run must keep them.
_MODEL_FLAGS = {
    "cell": "cell",
    "hidden": "hidden_size",
    "layers": "num_layers",
    "dropout": "dropout",
}
_BATCH_FLAGS = {"batch": "batch_size", "seq_len": "seq_len"}
# Flags that only steer training: a resumed run may change them (the run is then not exact).
_TRAIN_FLAGS = {
    "steps": "steps",
    "lr": "learning_rate",
    "schedule": "schedule",
    "warmup": "warmup_steps",
    "clip": "clip_norm",
    "eval_every": "eval_every",
    "sample_every": "sample_every",
    "patience": "patience",
    "seed": "seed",
    "max_skips": "max_consecutive_skips",
    "remat": "remat",
}
_MODEL_DEFAULTS = {"cell": "lstm", "hidden_size": 256, "num_layers": 1, "dropout": 0.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``jaxrnn train``'s flags; unset ones come from a resumed checkpoint or the defaults."""
    source = parser.add_argument_group("text")
    source.add_argument(
        "--text", metavar="FILE", help="a UTF-8 text file (default: the embedded corpus)"
    )
    source.add_argument(
        "--corpus",
        choices=data.CORPORA,
        default="docstrings",
        help="without --text: the standard library's docstrings or source (default: docstrings)",
    )
    source.add_argument(
        "--max-chars", type=int, metavar="N", help="use only the first N characters of the text"
    )
    source.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        metavar="F",
        help="the share of the text held out for validation, from its end (default: 0.05)",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=sorted(training.CELLS), help="the cell (default: lstm)")
    model.add_argument("--hidden", type=int, metavar="H", help="hidden size (default: 256)")
    model.add_argument("--layers", type=int, metavar="N", help="stacked layers (default: 1)")
    model.add_argument(
        "--dropout", type=float, metavar="P", help="dropout between layers (default: 0)"
    )

    fit = parser.add_argument_group("training")
    defaults = training.TrainConfig()
    fit.add_argument(
        "--batch", type=int, metavar="B", help=f"parallel streams (default: {defaults.batch_size})"
    )
    fit.add_argument(
        "--seq-len",
        type=int,
        metavar="L",
        help=f"characters per window, the BPTT truncation (default: {defaults.seq_len})",
    )
    fit.add_argument(
        "--steps", type=int, metavar="N", help=f"optimizer updates (default: {defaults.steps})"
    )
    fit.add_argument(
        "--lr", type=float, help=f"Adam's peak learning rate (default: {defaults.learning_rate})"
    )
    fit.add_argument(
        "--schedule",
        choices=training.SCHEDULES,
        help="learning-rate schedule: cosine or exponential after the warm-up, constant "
        "without one (default: cosine)",
    )
    fit.add_argument(
        "--warmup",
        type=int,
        metavar="N",
        help="warm-up steps of the cosine and exponential schedules (default: "
        f"{defaults.warmup_steps})",
    )
    fit.add_argument(
        "--clip",
        type=float,
        metavar="C",
        help=f"clip the gradients' global norm to C (default: {defaults.clip_norm})",
    )
    fit.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        help=f"steps between evaluations and checkpoints (default: {defaults.eval_every})",
    )
    fit.add_argument(
        "--sample-every",
        type=int,
        metavar="N",
        help=f"steps between samples, 0 for none (default: {defaults.sample_every})",
    )
    fit.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help=f"stop after N evaluations without progress, 0 never (default: {defaults.patience})",
    )
    fit.add_argument(
        "--seed", type=_seed, help="seed of the parameters, dropout and samples (default: 0)"
    )
    fit.add_argument(
        "--max-skips",
        type=int,
        metavar="K",
        help="updates with NaN or infinite gradients are skipped; stop after K in a row "
        f"(default: {defaults.max_consecutive_skips})",
    )
    fit.add_argument(
        "--remat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute activations in the backward pass: memory grows like the square root "
        "of --seq-len, for long windows, at about one more forward pass (default: off)",
    )
    fit.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="split the batch over the first N visible devices (default: all); "
        "the batch must divide by N",
    )
    fit.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop after this long with a checkpoint, evaluating the parameters reached "
        "(kept in best.npz if the best); --resume continues exactly",
    )
    fit.add_argument(
        "--stop-at-step",
        type=int,
        metavar="N",
        help="end this session after step N with a checkpoint, as an interruption would "
        "(for time-sliced jobs); --resume continues exactly",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        default="runs/char",
        metavar="DIR",
        help="checkpoint directory (default: runs/char)",
    )
    output.add_argument(
        "--resume", action="store_true", help="continue the run saved in --out, exactly"
    )
    output.add_argument(
        "--overwrite", action="store_true", help="start afresh even if --out holds a run"
    )
    output.add_argument(
        "--metrics", metavar="FILE", help="write one JSON line per evaluation to FILE"
    )
    output.add_argument(
        "--baseline",
        action="store_true",
        help="also fit order-k Markov chains on the same split and report the best",
    )
    output.add_argument(
        "--temperature", type=float, default=0.8, help="of the final sample (default: 0.8)"
    )
    output.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_text(args: argparse.Namespace) -> tuple[str, str]:
    """The text and how to name it in messages."""
    if args.text is not None:
        try:
            text, name = data.read_text_file(args.text), args.text
        except data.TextFileError as error:
            raise CommandError(str(error)) from None
    else:
        text, name = data.stdlib_corpus(args.corpus), f"the embedded {args.corpus} corpus"
    if args.max_chars is not None:
        if args.max_chars < 1:
            raise CommandError(f"--max-chars must be >= 1, got {args.max_chars}.")
        text = text[: args.max_chars]
    return text, name


def _explicit(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    return {
        field: getattr(args, flag)
        for flag, field in flags.items()
        if getattr(args, flag) is not None
    }


def _flag(field: str) -> str:
    for flags in (_MODEL_FLAGS, _BATCH_FLAGS, _TRAIN_FLAGS):
        for flag, name in flags.items():
            if name == field:
                return "--" + flag.replace("_", "-")
    return field


def _configs(args: argparse.Namespace, meta: dict[str, Any] | None, vocab_size: int):
    """The model and training configurations: the checkpoint's, then explicit flags."""
    model_fields = {**_MODEL_DEFAULTS, **_explicit(args, _MODEL_FLAGS)}
    train_fields = {
        **_explicit(args, _BATCH_FLAGS),
        **_explicit(args, _TRAIN_FLAGS),
    }
    if meta is not None:
        stored_model, stored_train = meta["model"], meta["train"]
        asked = {**_explicit(args, _MODEL_FLAGS), **_explicit(args, _BATCH_FLAGS)}
        stored = {**stored_model, **stored_train}
        conflicts = [
            f"{_flag(k)} {v} (saved: {stored[k]})" for k, v in asked.items() if stored.get(k) != v
        ]
        if conflicts:
            raise CommandError(
                f"the checkpoint in {args.out} is of another architecture or batching: "
                f"you asked for {', '.join(conflicts)}. Drop those flags to resume it, or "
                "train a new model with another --out (or --overwrite)."
            )
        model_fields = {**stored_model}
        train_fields = {**stored_train, **_explicit(args, _TRAIN_FLAGS)}
    model_fields["vocab_size"] = vocab_size
    try:
        model_config = training.ModelConfig(**model_fields)
        train_config = training.TrainConfig(**train_fields)
    except (TypeError, ValueError) as error:
        message = re.sub(r"^(Model|Train)Config: ", "", str(error))  # the flags, not fields
        for flags in (_MODEL_FLAGS, _BATCH_FLAGS, _TRAIN_FLAGS):
            for flag, field in flags.items():
                message = re.sub(rf"\b{field} must", f"--{flag.replace('_', '-')} must", message)
        raise CommandError(message) from None
    return model_config, train_config


def _check_fresh_run(out: Path, overwrite: bool) -> None:
    """A fresh run in ``out``: refused where an earlier run's checkpoints are, unless
    ``--overwrite``, and then only if they are jaxrnn checkpoints (never a user's file)."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; pass a directory for the run's checkpoints.")
    earlier = [path for path in (out / "checkpoint.npz", out / "best.npz") if path.exists()]
    if earlier and not overwrite:
        raise CommandError(
            f"{out} already holds a run ({earlier[0].name}); pass --resume to continue it, "
            "--overwrite to start afresh, or another --out."
        )
    for path in earlier:
        try:
            checkpoint.load_meta(path)
        except checkpoint.CheckpointError:
            raise CommandError(
                f"{path} is not a jaxrnn checkpoint; --overwrite replaces checkpoints only. Move "
                "it away, or pass another --out."
            ) from None


def _is_metrics_file(path: Path) -> bool:
    """Whether the first line of ``path`` is a metrics record, as ``fit`` writes them: a
    user's other file is never replaced by, nor extended with, metrics."""
    try:
        with path.open(encoding="utf-8") as file:
            record = json.loads(file.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"step", "val_bpc"} <= set(record)


def _check_outputs(out: Path, metrics: str | None, resume: bool, overwrite: bool) -> Path | None:
    """Makes ``out`` (and the metrics file's folder) before training, so that a path
    that cannot be written fails now, not after the first evaluation; the metrics
    file of a fresh run must not hold an earlier one's lines, unless ``--overwrite``,
    and neither flag replaces or extends a file that holds anything but metrics."""
    _writable_folder(out, "--out")
    if metrics is None:
        return None
    path = Path(metrics)
    if path.is_dir():
        raise CommandError(f"--metrics {path} is a directory; pass a file name.")
    if path.resolve() in ((out / "checkpoint.npz").resolve(), (out / "best.npz").resolve()):
        raise CommandError(
            f"--metrics {path} is where the run saves its checkpoints; pass another file, "
            f"e.g. {out / 'metrics.jsonl'}."
        )
    if path.exists() and path.stat().st_size > 0:
        if not _is_metrics_file(path):
            raise CommandError(
                f"--metrics {path} holds something other than `jaxrnn train` metrics; the run "
                "would write into it. Pass another file, or move that one away."
            )
        if not resume and not overwrite:
            raise CommandError(
                f"--metrics {path} already holds lines; pass --resume to append to them, "
                "--overwrite to start it afresh, or another file."
            )
    _writable_folder(path.parent, "--metrics", path)
    return path


def run(args: argparse.Namespace) -> int:
    """Trains, checkpoints into ``--out``, and prints the validation loss and a sample."""
    try:
        parallel.initialize_distributed()  # several hosts: the usual environment variables
    except (RuntimeError, ValueError) as error:
        raise CommandError(f"cannot start the multi-host run: {error}") from None
    if args.val_fraction is not None and not 0.0 < args.val_fraction < 0.5:
        raise CommandError(f"--val-fraction must lie in (0, 0.5), got {args.val_fraction}.")
    text, name = _load_text(args)
    fingerprint = hashlib.sha256(f"{args.val_fraction}\0{text}".encode()).hexdigest()[:16]
    out = Path(args.out)
    latest = out / "checkpoint.npz"

    meta = None
    if args.resume:
        try:
            meta = checkpoint.load_meta(latest)
        except checkpoint.CheckpointError as error:
            raise CommandError(f"cannot resume: {error} Train without --resume first.") from None
        if "model" not in meta or "train" not in meta or "vocab" not in meta:
            raise CommandError(f"{latest} is not a checkpoint of a character model.")
        if meta.get("fingerprint") != fingerprint:
            raise CommandError(
                f"the checkpoint in {out} was trained on another text (or --max-chars / "
                "--val-fraction); pass the same ones to resume, or train afresh with another --out."
            )
    else:
        _check_fresh_run(out, args.overwrite)
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise CommandError(f"--temperature must be a finite number >= 0, got {args.temperature}.")
    if args.time_limit is not None and not args.time_limit > 0:
        raise CommandError(f"--time-limit must be a number of seconds > 0, got {args.time_limit}.")
    if args.stop_at_step is not None and args.stop_at_step < 1:
        raise CommandError(f"--stop-at-step must be a step >= 1, got {args.stop_at_step}.")

    vocab = data.Vocabulary(tuple(meta["vocab"])) if meta is not None else None
    model_config, config = _configs(args, meta, 1 if vocab is None else vocab.size)
    try:
        mesh = parallel.make_mesh(args.devices)
        parallel.check_batch(config.batch_size, mesh, "--batch")
    except (TypeError, ValueError) as error:
        raise CommandError(str(error).replace("devices=", "--devices ", 1)) from None
    try:
        char_data = data.char_data(
            text,
            config.batch_size,
            config.seq_len,
            val_fraction=args.val_fraction,
            vocab=vocab,
            name=name,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    if vocab is None:
        model_config = dataclasses.replace(model_config, vocab_size=char_data.vocab.size)
    with _quiet_single_layer_dropout():  # the command says so in a note below
        model = training.CharModel(model_config)
    metrics_path = _check_outputs(out, args.metrics, args.resume, args.overwrite)
    if meta is None:  # every argument checked: a fresh run leaves no older run's checkpoints
        for old in (latest, out / "best.npz"):
            old.unlink(missing_ok=True)

    state, progress = None, None
    if meta is not None:
        optimizer, _ = training.make_optimizer(config)
        try:
            state, meta = training.restore_state(latest, model, optimizer, config.batch_size)
        except checkpoint.CheckpointError as error:
            raise CommandError(str(error)) from None
        progress = training.progress_from_meta(meta)

    n_train, n_val = char_data.train.size, char_data.val.size
    print(
        f"{name}: {len(text):,} characters, {char_data.vocab.size} distinct; "
        f"{n_train:,} for training in {config.batch_size} streams, {n_val:,} held out"
    )
    if mesh.size > 1 or jax.process_count() > 1:
        print(
            f"data parallel: the batch of {config.batch_size} split over {mesh.size} "
            f"{mesh.devices.flat[0].platform} devices ({jax.process_count()} process(es)), "
            f"{config.batch_size // mesh.size} streams each"
        )
    print(
        f"model: {model_config.describe()}, "
        f"{sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0)))):,} "
        "parameters"
    )
    first_step = 0 if state is None else int(state.step)
    if state is not None and first_step >= config.steps:
        print(
            f"{latest} is at step {first_step}, --steps {config.steps}: nothing to train; "
            "pass a larger --steps to continue it."
        )
        return 0
    bad_evals = progress.get("bad_evals", 0) if progress is not None else 0
    if state is not None and config.patience and bad_evals >= config.patience:
        print(
            f"{latest} stopped early at step {first_step} (no better validation loss in "
            f"{bad_evals} evaluation(s), --patience {config.patience}): nothing to train; pass "
            "a larger --patience, or 0, to continue it."
        )
        return 0
    if state is not None and args.stop_at_step is not None and first_step >= args.stop_at_step:
        print(
            f"{latest} is at step {first_step}, --stop-at-step {args.stop_at_step}: nothing to "
            "train; pass a later --stop-at-step, or none, to continue it."
        )
        return 0
    if state is not None:
        print(f"resuming {latest} at step {first_step} of {config.steps}")
    if model_config.dropout and model_config.num_layers == 1:
        print("note: --dropout acts between layers; with --layers 1 it changes nothing")

    markov = None
    if args.baseline:
        started = time.perf_counter()
        markov = baselines.select_markov_order(
            char_data.train_ids, char_data.val, char_data.vocab.size, orders=range(11)
        )
        scores = ", ".join(f"{k}: {v:.3f}" for k, v in markov.bpc_by_order.items())
        print(
            f"baseline: order-{markov.best_order} Markov chain (Witten-Bell), "
            f"{markov.best_bpc:.3f} bits per character on the same validation text "
            f"({time.perf_counter() - started:.0f} s; by order: {scores})"
        )

    prime = (
        "\n" if "\n" in char_data.vocab.chars else char_data.vocab.decode(char_data.train[0, :1])
    )
    metrics_file = None
    if metrics_path is not None:
        metrics_file = open(metrics_path, "a" if args.resume else "w", encoding="utf-8")  # noqa: SIM115
    started = time.perf_counter()
    try:
        result = training.fit(
            model,
            char_data,
            config,
            state=state,
            progress=progress,
            out_dir=out,
            metrics_file=metrics_file,
            text_fingerprint=fingerprint,
            prime=prime,
            time_limit=args.time_limit,
            stop_at_step=args.stop_at_step,
            show_progress=not args.no_progress,
            log=print if args.no_progress else None,
            devices=args.devices,
        )
    except training.NonFiniteError as error:
        raise CommandError(str(error)) from None
    finally:
        if metrics_file is not None:
            metrics_file.close()
    elapsed = time.perf_counter() - started

    steps_done = int(result.state.step)
    trained = f"{steps_done - first_step} steps" + (
        f" (steps {first_step + 1} to {steps_done})" if first_step else ""
    )
    best_line = (
        f"best validation {result.best_val_bpc:.3f} bits per character at step {result.best_step}"
        if math.isfinite(result.best_val_bpc)
        else "no validation yet"
    )
    summary = f"trained {trained} in {elapsed:.0f} s ({result.stopped}); {best_line}"
    if markov is not None and math.isfinite(result.best_val_bpc):
        verdict = "better than" if result.best_val_bpc < markov.best_bpc else "not yet below"
        summary += f", {verdict} the order-{markov.best_order} Markov chain's {markov.best_bpc:.3f}"
    print(summary)
    best = out / "best.npz"
    if best.exists():
        model, params, vocab, _ = training.load_model(best)
        key = jax.random.key(config.seed)
        length = config.sample_length  # as long as the periodic samples
        text = training.sample(model, params, vocab, prime, length, key, args.temperature)
        print(f"sample from {best} (temperature {args.temperature}):\n{prime.strip()}{text}")
    print(f"checkpoints in {out}/; sample more with: jaxrnn sample --checkpoint {out}")
    return 0

"""`jaxrnn train` and `jaxrnn sample` end to end, and their one-line refusals."""

import json

import numpy as np
import pytest

from jaxrnn import checkpoint
from jaxrnn.cli import main

TEXT = "It was the best of times, it was the worst of times.\n" * 30
TINY = ["--hidden", "8", "--batch", "2", "--seq-len", "8", "--eval-every", "2", "--no-progress"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def fails_with(capsys, message, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 2, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    return err


def test_train_then_sample(capsys, text_file, tmp_path):
    out_dir, metrics = tmp_path / "run", tmp_path / "metrics.jsonl"
    status, out, _ = run(
        capsys,
        "train",
        "--text",
        text_file,
        *TINY,
        "--steps",
        "4",
        "--out",
        out_dir,
        "--metrics",
        metrics,
        "--baseline",
        "--sample-every",
        "2",
    )
    assert status == 0
    assert "Markov chain (Witten-Bell)" in out and "--- sample at step 2 ---" in out
    assert "best validation" in out and "sample from" in out
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert {"train_bpc", "val_bpc", "learning_rate", "grad_norm"} <= set(records[0])
    assert (out_dir / "best.npz").is_file() and (out_dir / "checkpoint.npz").is_file()

    status, out, _ = run(
        capsys, "sample", "--checkpoint", out_dir, "--prime", "It was", "--length", "300"
    )
    assert status == 0 and out.startswith("It was") and len(out) == len("It was") + 300 + 1
    fails_with(
        capsys,
        "characters the model never saw: 'Z'",
        "sample",
        "--checkpoint",
        out_dir,
        "--prime",
        "Zebra",
    )

    for length in ("0", "-3"):
        fails_with(
            capsys,
            f"--length must be at least 1, got {length}",
            "sample",
            "--checkpoint",
            out_dir,
            "--length",
            length,
        )

    # Resuming with another architecture is refused; so is starting over without a flag.
    fails_with(
        capsys,
        "of another architecture",
        "train",
        "--text",
        text_file,
        *TINY[2:],
        "--hidden",
        "16",
        "--out",
        out_dir,
        "--resume",
    )
    fails_with(capsys, "already holds a run", "train", "--text", text_file, *TINY, "--out", out_dir)
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper(), encoding="utf-8")
    fails_with(
        capsys, "trained on another text", "train", "--text", other, "--out", out_dir, "--resume"
    )


def test_dropout_over_one_layer_is_a_note_not_a_warning(capsys, text_file, tmp_path):
    # Under pytest a warning is an error: the note replaces the library's warning, and
    # sampling the saved model does not warn again.
    argv = ["train", "--text", text_file, *TINY, "--steps", "2", "--out", tmp_path / "run"]
    status, out, _ = run(capsys, *argv, "--dropout", "0.2")
    assert status == 0
    assert "note: --dropout acts between layers; with --layers 1 it changes nothing" in out
    status, out, _ = run(capsys, "sample", "--checkpoint", tmp_path / "run", "--length", "20")
    assert status == 0 and len(out.rstrip("\n")) >= 20


def test_resume_continues_exactly(capsys, text_file, tmp_path):
    common = ["train", "--text", text_file, *TINY, "--steps", "6"]
    assert (
        run(capsys, *common, "--out", tmp_path / "whole", "--metrics", tmp_path / "whole.jsonl")[0]
        == 0
    )
    status, out, _ = run(
        capsys,
        *common,
        "--out",
        tmp_path / "split",
        "--metrics",
        tmp_path / "split.jsonl",
        "--stop-at-step",
        "3",
    )
    assert status == 0 and "(stop_at_step)" in out
    status, out, _ = run(
        capsys,
        "train",
        "--text",
        text_file,
        "--no-progress",
        "--out",
        tmp_path / "split",
        "--resume",
        "--metrics",
        tmp_path / "split.jsonl",
    )
    assert status == 0 and "resuming" in out and "at step 3 of 6" in out
    assert "trained 3 steps (steps 4 to 6)" in out
    again = ["train", "--text", text_file, "--no-progress", "--out", tmp_path / "split"]
    status, out, _ = run(capsys, *again, "--resume", "--steps", "5")
    assert status == 0 and "is at step 6, --steps 5: nothing to train" in out
    # The same --stop-at-step again trains nothing (it trained one step per session).
    status, out, _ = run(capsys, *again, "--resume", "--steps", "8", "--stop-at-step", "6")
    assert status == 0 and "is at step 6, --stop-at-step 6: nothing to train" in out

    def losses(name):
        lines = (tmp_path / name).read_text().splitlines()
        return [(r["step"], r["train_bpc"], r["val_bpc"]) for r in map(json.loads, lines)]

    assert losses("split.jsonl") == losses("whole.jsonl")
    whole = np.load(tmp_path / "whole" / "checkpoint.npz")
    split = np.load(tmp_path / "split" / "checkpoint.npz")
    for name in whole.files:
        if name != "__meta__":
            np.testing.assert_array_equal(whole[name], split[name], err_msg=name)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
        (b"na\xefve text", "not valid UTF-8"),
        (b"short text", "too short for one batch"),
    ],
)
def test_bad_text_files(capsys, tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    fails_with(capsys, message, "train", "--text", path, *TINY, "--out", tmp_path / "run")


def test_bad_checkpoints(capsys, tmp_path, text_file):
    fails_with(capsys, "no such checkpoint", "sample", "--checkpoint", tmp_path / "nothing")
    fails_with(capsys, "holds no checkpoint", "sample", "--checkpoint", tmp_path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    fails_with(capsys, "not a readable checkpoint", "sample", "--checkpoint", junk)
    foreign = checkpoint.save(tmp_path / "foreign.npz", {"w": np.zeros(3, np.float32)}, {"x": 1})
    fails_with(
        capsys, "not a checkpoint of a jaxrnn character model", "sample", "--checkpoint", foreign
    )
    fails_with(
        capsys,
        "cannot resume",
        "train",
        "--text",
        text_file,
        "--out",
        tmp_path / "none",
        "--resume",
    )


def test_a_saved_run_and_a_users_files_survive_refused_arguments(capsys, tmp_path, text_file):
    """Nothing a user saved is lost: --overwrite with an argument refused later keeps
    the run; files that are not jaxrnn checkpoints are never deleted; a fresh run's
    --metrics does not truncate a file that holds lines; a NaN learning rate, a bad
    --temperature and an --out that is a file are refused before any training."""
    out = tmp_path / "run"
    assert run(capsys, "train", "--text", text_file, *TINY, "--steps", "2", "--out", out)[0] == 0
    saved = {name: (out / name).read_bytes() for name in ("checkpoint.npz", "best.npz")}
    train = ["train", "--text", text_file, *TINY[2:], "--steps", "2"]
    fails_with(
        capsys, "--hidden must be >= 1", *train, "--hidden", "0", "--out", out, "--overwrite"
    )
    fails_with(
        capsys,
        "--lr must be a finite number > 0, got nan",
        *train,
        "--hidden",
        "8",
        "--lr",
        "nan",
        "--out",
        out,
        "--overwrite",
    )
    fails_with(
        capsys,
        "--temperature must be a finite number >= 0",
        *train,
        "--hidden",
        "8",
        "--temperature",
        "-1",
        "--out",
        out,
        "--overwrite",
    )
    fails_with(
        capsys,
        "--stop-at-step must be a step >= 1",
        *train,
        "--hidden",
        "8",
        "--stop-at-step",
        "0",
        "--out",
        out,
        "--overwrite",
    )
    assert {name: (out / name).read_bytes() for name in saved} == saved

    users = tmp_path / "users"
    users.mkdir()
    np.savez(users / "best.npz", mine=np.arange(3))
    fails_with(capsys, "already holds a run (best.npz)", *train, "--hidden", "8", "--out", users)
    fails_with(
        capsys,
        "best.npz is not a jaxrnn checkpoint",
        *train,
        "--hidden",
        "8",
        "--out",
        users,
        "--overwrite",
    )
    assert np.load(users / "best.npz")["mine"].tolist() == [0, 1, 2]

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "mine": true}\n')
    fails_with(
        capsys,
        "--metrics",
        *train,
        "--hidden",
        "8",
        "--out",
        tmp_path / "new",
        "--metrics",
        metrics,
    )
    assert metrics.read_text() == '{"step": 1, "mine": true}\n'
    # The run's own checkpoints: it failed with a traceback at the first checkpoint.
    for name in ("checkpoint.npz", "best.npz"):
        fails_with(
            capsys,
            f"--metrics {tmp_path / 'new' / name} is where the run saves its checkpoints",
            *train,
            "--hidden",
            "8",
            "--out",
            tmp_path / "new",
            "--metrics",
            tmp_path / "new" / name,
        )
        assert not (tmp_path / "new" / name).exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fails_with(capsys, "is a file", *train, "--hidden", "8", "--out", a_file)


def test_metrics_flags_never_replace_nor_extend_a_users_other_file(capsys, tmp_path, text_file):
    """--overwrite starts a metrics file afresh and --resume appends to one, but a file
    of the user's that holds anything else is refused by both, byte for byte as it was."""
    out, notes = tmp_path / "run", tmp_path / "notes.txt"
    train = ["train", "--text", text_file, *TINY, "--steps", "2", "--out", out]
    assert run(capsys, *train)[0] == 0
    for content in ("my notes\n", "[1, 2]\n", '{"step": 1}\n'):
        notes.write_text(content)
        for flag in ("--overwrite", "--resume"):
            fails_with(
                capsys,
                "holds something other than `jaxrnn train` metrics",
                *train,
                "--metrics",
                notes,
                flag,
            )
            assert notes.read_text() == content
    assert run(capsys, *train, "--metrics", tmp_path / "metrics.jsonl", "--overwrite")[0] == 0
    again = ["--metrics", tmp_path / "metrics.jsonl", "--overwrite"]
    assert run(capsys, *train, *again)[0] == 0  # an earlier run's metrics: started afresh
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2]


def test_a_run_that_stopped_early_is_over_for_resume(capsys, tmp_path, text_file):
    """The run that never stopped ends at its early stop: --resume trains nothing (it
    trained --eval-every more steps per session), unless --patience is raised."""
    out = tmp_path / "run"
    train = ["train", "--text", text_file, "--no-progress", "--out", out]
    assert run(capsys, *train, *TINY[2:], "--hidden", "8", "--steps", "2")[0] == 0
    latest = out / "checkpoint.npz"
    with np.load(latest) as npz:  # as the loop leaves a run that stopped early
        arrays = {name: npz[name] for name in npz.files}
    document = json.loads(arrays["__meta__"].tobytes())
    document["meta"]["progress"]["bad_evals"] = 2
    arrays["__meta__"] = np.frombuffer(json.dumps(document).encode(), np.uint8)
    np.savez(latest, **arrays)
    saved = latest.read_bytes()
    status, out_text, _ = run(capsys, *train, "--resume", "--steps", "8", "--patience", "2")
    assert status == 0 and "stopped early at step 2" in out_text
    assert "nothing to train; pass a larger --patience" in out_text
    assert latest.read_bytes() == saved
    status, out_text, _ = run(capsys, *train, "--resume", "--steps", "4", "--patience", "0")
    assert status == 0 and "trained 2 steps (steps 3 to 4)" in out_text


def test_remat_run_then_persistent_nan_stops_keeping_the_last_good_checkpoint(
    capsys, text_file, tmp_path
):
    out_dir, metrics = tmp_path / "run", tmp_path / "metrics.jsonl"
    common = ["train", "--text", text_file, "--no-progress", "--out", out_dir]
    common += ["--metrics", metrics]
    status, _, _ = run(capsys, *common, *TINY, "--steps", "2", "--remat")
    assert status == 0
    latest = out_dir / "checkpoint.npz"
    assert checkpoint.load_meta(latest)["train"]["remat"] is True

    # Poison the saved embedding: every window from now on has NaN gradients.
    with np.load(latest) as npz:
        arrays = {name: npz[name] for name in npz.files}
    (embed,) = [name for name in arrays if "embed" in name and "opt_state" not in name]
    arrays[embed] = np.full_like(arrays[embed], np.nan)
    np.savez(latest, **arrays)

    err = fails_with(
        capsys,
        "NaN or infinite for 3 steps in a row (to step 5)",
        *common,
        "--resume",
        "--steps",
        "8",
        "--max-skips",
        "3",
    )
    assert "last good parameters are kept in" in err and "--resume" in err
    with np.load(latest) as npz:
        kept = {name: npz[name] for name in npz.files}
    for name, value in arrays.items():  # no update went through
        if name.startswith(".params"):
            np.testing.assert_array_equal(kept[name], value, err_msg=name)
    assert checkpoint.load_meta(latest)["train"]["max_consecutive_skips"] == 3
    fails_with(
        capsys,
        "--max-skips must be >= 1, got 0",
        "train",
        "--text",
        text_file,
        *TINY,
        "--max-skips",
        "0",
        "--out",
        tmp_path / "other",
    )

"""Checkpoints: exact round trips, no pickle, atomic writes, clear refusals."""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import checkpoint


class Inner(NamedTuple):
    w: jax.Array
    count: jax.Array


def make_tree(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "params": [Inner(jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), jnp.int32(seed))],
        "half": jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16),
        "key": jax.random.key(seed),
        "flag": jnp.array(True),
        "wide": jnp.asarray(rng.normal(size=(2,)), jnp.float64),
    }


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_exact(tmp_path):
    tree = make_tree(1)
    path = checkpoint.save(tmp_path / "ck", tree, {"step": 7, "vocab": "ab\n"})
    assert path.name == "ck.npz"
    restored, meta = checkpoint.load(path, make_tree(0))
    assert_same(restored, tree)
    assert meta == {"step": 7, "vocab": "ab\n"} == checkpoint.load_meta(path)
    # The restored key draws what the saved one drew.
    np.testing.assert_array_equal(
        jax.random.normal(restored["key"], (3,), jnp.float32),
        jax.random.normal(tree["key"], (3,), jnp.float32),
    )


def test_the_file_is_plain_npz_without_pickle(tmp_path):
    path = checkpoint.save(tmp_path / "ck.npz", make_tree(), {"a": 1})
    with np.load(path, allow_pickle=False) as npz:
        assert "['params'][0].w" in npz.files
        document = json.loads(npz["__meta__"].tobytes())
    assert document["format"] == "jaxrnn-checkpoint" and document["meta"] == {"a": 1}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "ck.npz", make_tree(1), {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, make_tree(2), {"step": 2})
    monkeypatch.undo()
    restored, meta = checkpoint.load(path, make_tree(0))
    assert meta == {"step": 1}
    assert_same(restored, make_tree(1))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary file left


def test_the_data_is_flushed_and_synced_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch
):
    """Durability: the rename may reach the disk before the data unless the file is
    flushed and fsync-ed first; the rename itself, unless the folder is fsync-ed after."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(info.st_mode) else info.st_size))
        fsync(fd)

    def recording_replace(source, target):
        events.append(("replace", os.path.getsize(source)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    path = checkpoint.save(tmp_path / "ck", make_tree(), {"step": 1})
    size = path.stat().st_size
    assert events == [("fsync", size), ("replace", size), ("fsync", "folder")]


def test_a_half_written_file_is_refused(tmp_path):
    path = checkpoint.save(tmp_path / "ck.npz", make_tree(), {})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(truncated, make_tree())


def test_refusals_name_what_is_wrong(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint there"):
        checkpoint.load(tmp_path / "missing.npz", make_tree())
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(2))
    with pytest.raises(checkpoint.CheckpointError, match="not a jaxrnn checkpoint"):
        checkpoint.load_meta(plain)
    path = checkpoint.save(tmp_path / "ck.npz", make_tree(), {})
    other = make_tree()
    other["params"][0] = Inner(jnp.zeros((3, 5), jnp.float32), jnp.int32(0))
    with pytest.raises(
        checkpoint.CheckpointError, match=r"\['params'\]\[0\]\.w is float32\[3, 4\]"
    ):
        checkpoint.load(path, other)
    fewer = {k: v for k, v in make_tree().items() if k != "flag"}
    with pytest.raises(checkpoint.CheckpointError, match=r"unexpected \['flag'\]"):
        checkpoint.load(path, fewer)
    more = {**make_tree(), "extra": jnp.zeros(2)}
    with pytest.raises(checkpoint.CheckpointError, match=r"it lacks \['extra'\]"):
        checkpoint.load(path, more)
    # Same shapes, other dtypes: refused, never cast silently.
    other = make_tree()
    other["params"][0] = Inner(other["params"][0].w, jnp.float32(0))
    with pytest.raises(
        checkpoint.CheckpointError, match=r"count is int32\[\] there, float32\[\] here"
    ):
        checkpoint.load(path, other)
    other = {**make_tree(), "half": jnp.zeros(5, jnp.float32)}
    with pytest.raises(checkpoint.CheckpointError, match=r"\['half'\] is bfloat16\[5\] there"):
        checkpoint.load(path, other)
    other = {**make_tree(), "key": jax.random.split(jax.random.key(0), 4)}
    with pytest.raises(checkpoint.CheckpointError, match=r"\['key'\] is a PRNG key of shape \[\]"):
        checkpoint.load(path, other)
    other = {**make_tree(), "key": jnp.zeros((), jnp.uint32)}
    with pytest.raises(checkpoint.CheckpointError, match=r"\['key'\] is a PRNG key"):
        checkpoint.load(path, other)


def write_document(path, document):
    """An .npz holding only a JSON document, as a checkpoint's ``__meta__`` is stored."""
    np.savez(path, __meta__=np.frombuffer(json.dumps(document).encode(), dtype=np.uint8))
    return path


def test_a_newer_format_or_another_programs_document_is_refused(tmp_path):
    newer = {"format": "jaxrnn-checkpoint", "version": checkpoint.VERSION + 1, "meta": {}}
    write_document(tmp_path / "newer.npz", newer)
    for read in (checkpoint.load_meta, lambda p: checkpoint.load(p, {})):
        with pytest.raises(checkpoint.CheckpointError, match=r"newer jaxrnn \(format 2\); upgr"):
            read(tmp_path / "newer.npz")
    write_document(tmp_path / "other.npz", {"format": "other-tool", "version": 1, "meta": {}})
    for read in (checkpoint.load_meta, lambda p: checkpoint.load(p, {})):
        with pytest.raises(checkpoint.CheckpointError, match=r"\.npz file but not a jaxrnn check"):
            read(tmp_path / "other.npz")
    # and save leaves both as they were, saying which is which
    for name, message in (("newer.npz", "is a newer jaxrnn's"), ("other.npz", "is not a jaxrnn")):
        before = (tmp_path / name).read_bytes()
        with pytest.raises(checkpoint.CheckpointError, match=f"exists and {message}"):
            checkpoint.save(tmp_path / name, make_tree(), {})
        assert (tmp_path / name).read_bytes() == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"version": "2"}, r"damaged document \(format version '2'\)"),
        ({"version": None}, r"damaged document \(format version None\)"),
        ({"meta": [1]}, r"damaged document \(its meta or leaves\)"),
        ({"leaves": "x"}, r"damaged document \(its meta or leaves\)"),
    ],
)
def test_a_damaged_document_is_a_checkpoint_error_not_a_type_error(tmp_path, damage, message):
    document = {"format": "jaxrnn-checkpoint", "version": 1, "leaves": {}, "meta": {}}
    path = write_document(tmp_path / "ck.npz", {**document, **damage})
    for read in (checkpoint.load_meta, lambda p: checkpoint.load(p, {})):
        with pytest.raises(checkpoint.CheckpointError, match=message):
            read(path)
    # A document without meta (none was given to a writer that left it out) reads as {}.
    path = write_document(tmp_path / "bare.npz", {"format": "jaxrnn-checkpoint", "version": 1})
    assert checkpoint.load_meta(path) == {} and checkpoint.load(path, {}) == ({}, {})


def test_save_never_replaces_a_file_that_is_not_a_checkpoint(tmp_path):
    """Nothing a user saved is lost: another .npz (or a corrupt file) under the name
    stays as it was, and save says so; an older checkpoint is replaced."""
    plain = tmp_path / "data.npz"
    np.savez(plain, important=np.arange(3.0))
    before = plain.read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match=r"exists and is not a jaxrnn checkp"):
        checkpoint.save(plain, make_tree(), {})
    assert plain.read_bytes() == before
    path = checkpoint.save(tmp_path / "ck", make_tree(), {"step": 1})
    checkpoint.save(path, make_tree(), {"step": 2})
    assert checkpoint.load_meta(path) == {"step": 2}
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match=r"is a directory"):
        checkpoint.save(tmp_path / "dir.npz", make_tree(), {})


def test_save_removes_its_own_stale_temporaries_only(tmp_path):
    stale = tmp_path / ".ck.npz.k3j_9x2a.tmp"  # what mkstemp names a killed writer's file
    notes = tmp_path / ".ck.npz.my-notes.tmp"  # a user's file that merely looks alike
    stale.write_text("half a checkpoint")
    notes.write_text("user data")
    checkpoint.save(tmp_path / "ck", make_tree(), {})
    assert not stale.exists()
    assert notes.read_text() == "user data"


def test_python_and_numpy_numbers_round_trip(tmp_path):
    """A tree of Python floats and ints, or of NumPy float64 arrays, loads back with
    itself as the template (as JAX holds them: float32 and int32 without x64)."""
    tree = {"lr": 0.1, "step": 3, "table": np.linspace(0.0, 1.0, 4)}
    for x64 in (False, True):
        with jax.enable_x64(x64):
            path = checkpoint.save(tmp_path / f"numbers{x64}", tree, {})
            restored, _ = checkpoint.load(path, tree)
            assert restored["lr"].dtype == (jnp.float64 if x64 else jnp.float32)
            assert restored["step"].dtype == (jnp.int64 if x64 else jnp.int32)
            np.testing.assert_allclose(restored["table"], tree["table"])
            assert int(restored["step"]) == 3


def test_meta_that_json_cannot_hold_is_refused_naming_meta(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match=r"meta must hold only JSON.*int\(\)"):
        checkpoint.save(tmp_path / "ck", make_tree(), {"step": np.int64(3)})
    assert not list(tmp_path.iterdir())
    (tmp_path / "run.json").write_text('{"step": 3}')
    with pytest.raises(
        checkpoint.CheckpointError, match=r"neither an \.npz archive nor an"
    ) as info:
        checkpoint.load_meta(tmp_path / "run.json")
    assert "allow_pickle" not in str(info.value)
    np.save(tmp_path / "array.npy", np.ones(2))
    with pytest.raises(checkpoint.CheckpointError, match=r"an \.npy array, not an \.npz"):
        checkpoint.load_meta(tmp_path / "array.npy")


# A child process that writes large checkpoints in a loop, version after version; every
# array of version v holds v. With a pause point it stops in the middle of writing that
# version (after so many bytes reached the temporary file) and says so, to be killed there.
WRITER = r"""
import os, sys, time
import numpy as np
from jaxrnn import checkpoint

path, pause_version, pause_byte = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
version, written = 0, 0

class Pausing:
    def __init__(self, file):
        self.file = file
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.file.close()
    def __getattr__(self, name):
        return getattr(self.file, name)
    def write(self, data):
        global written
        if version == pause_version and written + len(data) >= pause_byte:
            cut = max(pause_byte - written, 0)
            self.file.write(data[:cut])
            self.file.flush()
            print("paused", flush=True)
            time.sleep(600)
        written += len(data)
        return self.file.write(data)

fdopen = os.fdopen
checkpoint.os.fdopen = lambda *a, **k: Pausing(fdopen(*a, **k))
while True:
    version, written = version + 1, 0
    a, b = np.full(1_000_000, version, np.float32), np.full((500, 1000), version, np.int32)
    tree = {"a": a, "b": b}
    checkpoint.save(path, tree, {"version": version})
    print("saved", version, flush=True)
"""


def template():
    return {"a": np.zeros(1_000_000, np.float32), "b": np.zeros((500, 1000), np.int32)}


def test_a_writer_killed_mid_write_leaves_the_last_complete_checkpoint(tmp_path):
    rng = random.Random(7)
    size = 6_000_000  # the arrays' bytes: each version's file is a little larger
    # Three kills at random points inside the write of version 3, one at a random moment.
    plans = [(3, rng.randrange(1, size)) for _ in range(3)] + [(0, 0)]
    children = []
    for i, (version, byte) in enumerate(plans):
        path = tmp_path / f"run{i}" / "ck.npz"
        path.parent.mkdir()
        command = [sys.executable, "-c", WRITER, str(path), str(version), str(byte)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        watchdog = threading.Timer(300, child.kill)  # never hang the suite on a stuck child
        watchdog.daemon = True
        watchdog.start()
        children.append((child, path, version))
    for child, path, version in children:
        for line in child.stdout:
            if line.startswith("paused") or (version == 0 and line == "saved 2\n"):
                break
        if version == 0:
            time.sleep(rng.uniform(0.0, 0.5))  # anywhere in the following writes
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL

        tree, meta = checkpoint.load(path, template())  # the last complete one loads
        assert meta["version"] == version - 1 if version else meta["version"] >= 2
        assert all(np.all(np.asarray(leaf) == meta["version"]) for leaf in jax.tree.leaves(tree))
        # The interrupted write is only ever a temporary file, and that is refused.
        leftovers = list(path.parent.glob(".ck.npz.*.tmp"))
        assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == ["ck.npz"]
        if version:
            assert len(leftovers) == 1
            with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
                checkpoint.load(leftovers[0], template())
        # The next save clears the leftover.
        checkpoint.save(path, template(), {"version": 0})
        assert [p.name for p in path.parent.iterdir()] == ["ck.npz"]


def test_a_key_keeps_the_implementation_it_was_saved_with(tmp_path):
    # The key decides the next draws: a threefry template must not turn an rbg key into
    # another one (nor be refused as another dtype).
    key = jax.random.key(3, impl="rbg")
    path = checkpoint.save(tmp_path / "run", {"key": key})
    restored, _ = checkpoint.load(path, {"key": jax.random.key(0)})
    assert str(jax.random.key_impl(restored["key"])) == str(jax.random.key_impl(key))
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(key))
    assert jax.random.uniform(restored["key"]) == jax.random.uniform(key)


def test_write_atomically_refuses_a_write_that_is_no_function(tmp_path):
    with pytest.raises(TypeError, match="write must be a function write\\(file\\), got bytes"):
        checkpoint.write_atomically(tmp_path / "notes.txt", b"text")
    assert list(tmp_path.iterdir()) == []

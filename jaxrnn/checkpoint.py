"""Checkpoints in a safe format, written atomically.

A checkpoint is one ``.npz`` file (a zip of ``.npy`` arrays, read back with
``allow_pickle=False``, so loading one never runs code) holding every leaf of
a pytree under its path (``params['rnn'][0][0].w_ih``) and, beside them,
a JSON document (``__meta__``) for everything that is not an array: the
vocabulary, the model and training configuration, the step, counters.

Writing goes to a temporary file in the same directory, which is flushed,
``fsync``-ed and then renamed over the old checkpoint with ``os.replace``
(atomic on POSIX and Windows), and the directory is ``fsync``-ed after: a
crash at any moment leaves either the previous checkpoint or the new one,
never a half-written file under the checkpoint's name (tested by killing a
writer with SIGKILL mid-write). A killed writer leaves its temporary file
(``.NAME.npz.XXXXXXXX.tmp``), which is never read as a checkpoint and which
the next ``save`` to the same name removes: one writer per checkpoint file.
``save`` replaces an older checkpoint, and refuses to replace anything else
(another ``.npz``, a corrupt file, a directory): nothing a user saved is lost.

Loading takes a *template*, a pytree of the expected structure (e.g. a
freshly initialised state): the structure comes from code, the values from
the file, and any difference in names, shapes or dtypes is an error that
says which leaf differs (a PRNG key keeps the implementation it was saved
with).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CheckpointError", "load", "load_meta", "save", "write_atomically"]

FORMAT = "jaxrnn-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not match what is asked of it."""


class _NewerFormat(CheckpointError):
    """A checkpoint of a later format version than this jaxrnn reads."""


def _leaf_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path)


def _is_key_array(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_numpy(leaf: Any) -> tuple[np.ndarray, dict[str, str]]:
    """An array numpy can store without pickle, and what it takes to restore it."""
    info: dict[str, str] = {}
    if _is_key_array(leaf):
        info["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    array = np.asarray(leaf)
    if array.dtype.kind not in "biufc":  # e.g. bfloat16: stored as raw unsigned ints
        info["dtype"] = str(array.dtype)
        array = array.view(f"u{array.dtype.itemsize}")
    return array, info


def save(path: str | os.PathLike[str], tree: Any, meta: dict[str, Any] | None = None) -> Path:
    """Writes a pytree of arrays and a JSON-able dict to ``path``, atomically.

    Args:
      path: the checkpoint file; ``.npz`` is appended if missing. Its directory
        is created if needed.
      tree: a pytree whose leaves are arrays (PRNG key arrays and bfloat16 included).
      meta: JSON-serialisable data stored beside the arrays.

    Returns:
      The path written.

    Raises:
      CheckpointError: something other than a jaxrnn checkpoint is at ``path``
        (it is left as it was), or ``meta`` holds what JSON cannot.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> from jaxrnn import checkpoint
      >>> path = checkpoint.save(tempfile.mkdtemp() + "/ck", {"w": jnp.ones(2)}, {"step": 3})
      >>> tree, meta = checkpoint.load(path, {"w": jnp.zeros(2)})
      >>> tree["w"].tolist(), meta["step"]
      ([1.0, 1.0], 3)
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays, leaves_info = {}, {}
    for leaf_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _leaf_name(leaf_path)
        arrays[name], info = _to_numpy(leaf)
        if info:
            leaves_info[name] = info
    document = {"format": FORMAT, "version": VERSION, "leaves": leaves_info, "meta": meta or {}}
    try:
        text = json.dumps(document)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"save: meta must hold only JSON values (dicts with str keys, lists, str, int, "
            f"float, bool, None), {error}. Convert NumPy numbers with int() or float()."
        ) from None
    arrays[_META] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    write_atomically(path, lambda file: np.savez(file, **arrays))
    return path


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it over
    ``path``: a crash at any moment leaves the earlier file or the new one, whole.

    The file is flushed and ``fsync``-ed before the rename and the folder after it.
    A process killed while writing leaves its temporary file (``.NAME.XXXXXXXX.tmp``):
    the next write to the same name removes it (only names ``mkstemp`` makes: a
    user's file that merely looks alike stays). ``save`` writes checkpoints with
    it, ``jaxrnn.plots`` its figures and their JSON, and the benchmark scripts
    their tables and results.

    Args:
      path: the file to write; its folder must exist.
      write: called once with the temporary file, open for writing bytes.

    Examples:
      >>> import tempfile
      >>> from pathlib import Path
      >>> from jaxrnn import checkpoint
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = Path(tmp) / "notes.txt"
      ...     checkpoint.write_atomically(path, lambda file: file.write(b"old"))
      ...     checkpoint.write_atomically(path, lambda file: file.write(b"new"))
      ...     path.read_bytes(), sorted(p.name for p in Path(tmp).iterdir())
      (b'new', ['notes.txt'])
    """
    if not callable(write):
        raise TypeError(
            f"write_atomically: write must be a function write(file), got {type(write).__name__}."
        )
    path = Path(path)
    stale_name = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale_name.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp made it private
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _check_replaceable(path: Path) -> None:
    """Raises unless there is nothing at ``path`` or a jaxrnn checkpoint: ``save``
    replaces an older checkpoint, never a user's other files."""
    if path.is_dir():
        raise CheckpointError(
            f"save: {path} is a directory; pass the checkpoint's file name, e.g. {path / 'ck'}."
        )
    if not path.exists():
        return
    try:
        _read_document(path)
    except _NewerFormat:
        raise CheckpointError(
            f"save: {path} exists and is a newer jaxrnn's checkpoint; save would replace it. "
            "Save under another name, or upgrade jaxrnn."
        ) from None
    except CheckpointError:
        raise CheckpointError(
            f"save: {path} exists and is not a jaxrnn checkpoint; save would replace it. Save "
            "under another name, or move that file away first."
        ) from None


def _fsync_directory(directory: Path) -> None:
    """Makes the rename durable; not every platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(
    path: str | os.PathLike[str], names: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of the checkpoint at ``path`` (only ``names``, when given) and its
    JSON document."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there.")
    try:
        with path.open("rb") as file:
            npz = np.load(file, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # one .npy array
                raise ValueError("an .npy array, not an .npz archive")
            with npz:
                wanted = npz.files if names is None else [n for n in names if n in npz.files]
                arrays = {name: npz[name] for name in wanted}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        reason = str(error)
        if "pickle" in reason:  # NumPy's advice there (allow_pickle=True) would run code
            reason = "neither an .npz archive nor an array: NumPy took it for pickled data"
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}).") from None
    try:
        document = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
        if document.get("format") != FORMAT:
            raise KeyError("format")
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError):
        raise CheckpointError(f"{path} is an .npz file but not a jaxrnn checkpoint.") from None
    version = document.get("version", 0)
    if isinstance(version, int) and version > VERSION:
        raise _NewerFormat(
            f"{path} was written by a newer jaxrnn (format {version}); upgrade jaxrnn."
        )
    # A hand-edited or damaged document: refused here, not as a TypeError or KeyError later.
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path} has a damaged document (format version {version!r}).")
    if not isinstance(document.get("meta", {}), dict) or not isinstance(
        document.get("leaves", {}), dict
    ):
        raise CheckpointError(f"{path} has a damaged document (its meta or leaves).")
    return arrays, document


def _read_document(path: Path) -> dict[str, Any]:
    """The JSON document of the checkpoint at ``path``, without reading its arrays."""
    return _read(path, names=(_META,))[1]


def load_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without building any arrays on a device.

    Args:
      path: a file written by ``save``.

    Returns:
      The ``meta`` dict given to ``save`` (``{}`` if none was).

    Raises:
      CheckpointError: the file is missing or not a checkpoint.

    Examples:
      >>> import tempfile
      >>> from jaxrnn import checkpoint
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = checkpoint.save(f"{tmp}/ck", {}, {"step": 3, "cell": "lstm"})
      ...     meta = checkpoint.load_meta(path)
      >>> meta
      {'step': 3, 'cell': 'lstm'}
    """
    return _read_document(Path(path)).get("meta", {})


def load(path: str | os.PathLike[str], template: Any) -> tuple[Any, dict[str, Any]]:
    """Reads a checkpoint into the structure of ``template``.

    Args:
      path: a file written by ``save``.
      template: a pytree of the expected structure, shapes and dtypes (its
        values are ignored; ``jax.ShapeDtypeStruct`` leaves do, e.g. from
        ``jax.eval_shape``), e.g. the state a fresh run would start from.

    Returns:
      ``(tree, meta)``: the stored values in ``template``'s structure, as JAX
      arrays, and the stored metadata. A PRNG key keeps the implementation it
      was saved with (threefry, rbg, ...), whatever the template's: the key is
      what decides the next draws, so a resumed run draws as one that never
      stopped.

    Raises:
      CheckpointError: the file is missing or not a checkpoint, or its arrays
        do not match the template (the message names the first leaf that differs).

    Examples:
      >>> import tempfile, jax, jax.numpy as jnp
      >>> from jaxrnn import checkpoint
      >>> tree = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(7)}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = checkpoint.save(f"{tmp}/run", tree, {"vocab": "abc"})
      ...     template = jax.eval_shape(lambda: tree)  # shapes and dtypes only
      ...     restored, meta = checkpoint.load(path, template)
      ...     try:
      ...         checkpoint.load(path, {"w": jnp.zeros((3, 2)), "step": jnp.int32(0)})
      ...     except checkpoint.CheckpointError as error:
      ...         message = str(error)
      >>> path.name, restored["w"].shape, int(restored["step"]), meta
      ('run.npz', (2, 3), 7, {'vocab': 'abc'})
      >>> bool(jnp.array_equal(restored["w"], tree["w"]))
      True
      >>> message
      "...run.npz does not fit this model: ['w'] is float...[2, 3] there, float...[3, 2] here."
    """
    arrays, document = _read(path)
    leaves_info = document.get("leaves", {})
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_leaf_name(p) for p, _ in flat]
    missing = [n for n in names if n not in arrays]
    unexpected = sorted(set(arrays) - set(names))
    if missing or unexpected:
        detail = f"it lacks {missing[0]}" if missing else f"it has an unexpected {unexpected[0]}"
        raise CheckpointError(
            f"{path} does not fit this model: {detail} "
            f"({len(arrays)} arrays stored, {len(names)} expected)."
        )
    leaves = []
    for name, (_, like) in zip(names, flat, strict=True):
        stored, info = arrays[name], leaves_info.get(name, {})
        if "dtype" in info:
            stored = stored.view(jnp.dtype(info["dtype"]))
        if "key_impl" in info:
            leaf = jax.random.wrap_key_data(jnp.asarray(stored), impl=info["key_impl"])
            if not _is_key_array(like) or leaf.shape != np.shape(like):
                raise CheckpointError(
                    f"{path} does not fit this model: {name} is a PRNG key of shape "
                    f"{list(leaf.shape)} there, not here."
                )
            leaves.append(leaf)
            continue
        like_shape, like_dtype = np.shape(like), jnp.result_type(like)
        # As JAX would hold it: a Python float saved is float64 in the file, float32
        # in JAX (without x64) and in a template of the same tree.
        stored_dtype = jax.dtypes.canonicalize_dtype(stored.dtype)
        if tuple(stored.shape) != tuple(like_shape) or stored_dtype != like_dtype:
            raise CheckpointError(
                f"{path} does not fit this model: {name} is {stored_dtype}{list(stored.shape)} "
                f"there, {like_dtype}{list(like_shape)} here."
            )
        leaves.append(jnp.asarray(stored, like_dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves), document.get("meta", {})

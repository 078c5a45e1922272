"""Text for character models: the embedded corpus, the vocabulary and sequence batching.

The embedded corpus needs no download: it is the Python standard library's
own docstrings (or source), read from the running interpreter's installation,
so that every machine with the same Python builds the same text.

Sequence batching follows the notes: the training text becomes ``batch``
parallel streams (one row each), and a training step reads the next window of
``seq_len`` characters from every stream, so that the carry left by one
window is the right starting point for the next::

    text   a b c d e f g h i j k l m n o p q r s t u v w x   (24 characters)
    streams (batch=3, 8 each):  a b c d e f g h
                                i j k l m n o p
                                q r s t u v w x
    window 0 (seq_len=3): inputs a b c / i j k / q r s, targets b c d / j k l / r s t
    window 1:             inputs d e f / l m n / t u v, targets e f g / m n o / u v w

Windows are returned time-major, ``(seq_len, batch)``, as ``jaxrnn.unroll`` wants them.

The synthetic long-memory tasks (adding problem, copying memory, temporal
order) live in ``jaxrnn.tasks`` and are re-exported here, so that every data
source is one import away: ``jaxrnn.data.adding_problem(key, length, batch_size)``.
"""

from __future__ import annotations

import ast
import functools
import os
import random
import string
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxrnn.tasks import adding_problem, copying_baseline, copying_memory, temporal_order

__all__ = [
    "CharData",
    "TextFileError",
    "Vocabulary",
    "adding_problem",
    "batchify",
    "char_data",
    "copying_baseline",
    "copying_memory",
    "num_windows",
    "read_text_file",
    "split_text",
    "stdlib_corpus",
    "temporal_order",
    "window",
]

# Packages of the standard library left out of the corpus: tests, tools and data tables.
_SKIPPED_DIRS = frozenset(
    {
        "__pycache__",
        "distutils",
        "encodings",
        "ensurepip",
        "idlelib",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "tkinter",
        "turtledemo",
        "venv",
    }
)
# Printable ASCII without the rarely used whitespace: a vocabulary of at most 96 characters.
_KEPT_CHARS = frozenset(string.printable) - set("\t\r\x0b\x0c")
CORPORA = ("docstrings", "source")


class TextFileError(ValueError):
    """A text file that cannot be used: missing, empty, binary or not UTF-8."""


# --------------------------------------------------------------------------- the corpus


def _stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files, in a fixed order that depends only on the names."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith("config-")
        )
        files.extend(Path(directory, n) for n in names if n.endswith(".py"))
    files.sort(key=lambda path: path.relative_to(root).as_posix())
    # Shuffled with a fixed seed, so that the held-out tail is a fair sample of
    # modules rather than the alphabet's last letters (xml, zipfile, zoneinfo).
    random.Random(0).shuffle(files)
    return files


def _docstrings(source: str) -> Iterable[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _clean(text: str) -> str:
    text = text.replace("\t", "    ").replace("\r\n", "\n")
    return "".join(ch for ch in text if ch in _KEPT_CHARS)


@functools.lru_cache(maxsize=8)
def stdlib_corpus(kind: str = "docstrings", *, max_chars: int | None = None) -> str:
    """The embedded corpus: the standard library's docstrings or source, as one string.

    Every ``.py`` file of the running interpreter's standard library (tests,
    IDLE, tkinter, lib2to3 and data tables left out) is read in a fixed,
    seeded-shuffled order; from each, either its docstrings (module, classes,
    functions, in ``ast.walk`` order, cleaned by ``inspect.cleandoc``) or its
    whole source is kept. Characters outside printable ASCII are dropped and
    tabs become four spaces, so the vocabulary has at most 96 characters. The
    same Python version gives the same text on every machine.

    Args:
      kind: ``"docstrings"`` (about 1.4 million characters on CPython 3.11) or
        ``"source"`` (about 7.8 million).
      max_chars: stop after this many characters (at a document boundary, then
        cut); ``None`` for all of it.

    Returns:
      The corpus; documents are separated by a blank line.

    Example:
      >>> from jaxrnn import data
      >>> text = data.stdlib_corpus("docstrings", max_chars=1000)
      >>> len(text)
      1000
    """
    if kind not in CORPORA:
        raise ValueError(f"stdlib_corpus: kind must be one of {CORPORA}, got {kind!r}.")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"stdlib_corpus: max_chars must be >= 1 or None, got {max_chars}.")
    parts, total = [], 0
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        documents = _docstrings(source) if kind == "docstrings" else [source]
        for document in documents:
            document = _clean(document).strip("\n")
            if document:
                parts.append(document)
                total += len(document) + 2
        if max_chars is not None and total >= max_chars:
            break
    text = "\n\n".join(parts) + "\n"
    return text if max_chars is None else text[:max_chars]


def read_text_file(path: str | os.PathLike[str]) -> str:
    """Reads a UTF-8 text file for training, refusing what is not one.

    Args:
      path: the file.

    Returns:
      Its text, with Windows line endings made ``\\n``.

    Raises:
      TextFileError: the file is missing, a directory, empty, binary (it has
        NUL bytes) or not valid UTF-8; the message says which and what to do.

    Examples:
      >>> import tempfile
      >>> from pathlib import Path
      >>> from jaxrnn.data import TextFileError, read_text_file
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = Path(tmp, "tiny.txt")
      ...     _ = path.write_bytes(b"one\\r\\ntwo\\n")
      ...     text = read_text_file(path)
      ...     _ = Path(tmp, "blob.bin").write_bytes(b"\\x00\\x01")
      ...     try:
      ...         read_text_file(Path(tmp, "blob.bin"))
      ...     except TextFileError as error:
      ...         message = str(error)
      >>> text
      'one\\ntwo\\n'
      >>> message
      '...blob.bin looks binary (it contains NUL bytes); ...'
    """
    path = Path(path)
    if not path.exists():
        raise TextFileError(f"{path}: no such file; pass an existing UTF-8 text file to --text.")
    if path.is_dir():
        raise TextFileError(f"{path} is a directory; --text wants one UTF-8 text file.")
    raw = path.read_bytes()
    if not raw.strip():
        raise TextFileError(
            f"{path} is empty; train on a text with at least a few thousand characters."
        )
    if b"\x00" in raw[:65536]:
        raise TextFileError(
            f"{path} looks binary (it contains NUL bytes); pass a UTF-8 text file, "
            "e.g. a .txt, .md or .py file."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextFileError(
            f"{path} is not valid UTF-8 (byte {error.start}: "
            f"{raw[error.start : error.start + 1]!r}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8."
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


# --------------------------------------------------------------------------- vocabulary


class Vocabulary(NamedTuple):
    """The characters a model reads and writes, sorted; a character's id is its index.

    Attributes:
      chars: the distinct characters, sorted by code point.

    Example:
      >>> from jaxrnn.data import Vocabulary
      >>> vocab = Vocabulary.from_text("hello")
      >>> vocab.chars, vocab.encode("hole").tolist(), vocab.decode([3, 2])
      (('e', 'h', 'l', 'o'), [1, 3, 2, 0], 'ol')
    """

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The vocabulary of every character in ``text``."""
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        """V, the number of characters."""
        return len(self.chars)

    def missing(self, text: str) -> list[str]:
        """The characters of ``text`` that are not in the vocabulary, sorted."""
        known = set(self.chars)
        return sorted(set(text) - known)

    def encode(self, text: str) -> np.ndarray:
        """Character ids, int32 of shape ``(len(text),)``; raises ``ValueError`` on unknown ones."""
        index = {ch: i for i, ch in enumerate(self.chars)}
        try:
            return np.fromiter((index[ch] for ch in text), dtype=np.int32, count=len(text))
        except KeyError:
            unknown = "".join(self.missing(text))
            raise ValueError(
                f"the text has characters outside the vocabulary of {self.size}: {unknown!r}."
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of a sequence of ids; raises ``ValueError`` on an id outside ``[0, size)``
        (a negative one would wrap around to the end of the vocabulary)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.size]
        if bad:
            raise ValueError(f"ids must lie in [0, {self.size}) (the vocabulary), got {bad[0]}.")
        return "".join(self.chars[i] for i in ids)


# --------------------------------------------------------------------------- batching


def split_text(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Holds out the last ``val_fraction`` of a sequence for validation.

    Args:
      ids: character ids, shape ``(n,)``.
      val_fraction: in (0, 1).

    Returns:
      ``(train, val)``: the first ``n - round(n * val_fraction)`` ids and the rest,
      shapes ``(n - n_val,)`` and ``(n_val,)`` (``n_val`` at least 1).

    Examples:
      >>> import numpy as np
      >>> from jaxrnn.data import split_text
      >>> train, val = split_text(np.arange(10), 0.2)
      >>> train.tolist(), val.tolist()
      ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    n_val = max(1, round(len(ids) * val_fraction))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cuts a sequence into ``batch_size`` contiguous streams, the notes' reshape.

    The tail that does not fill every stream is dropped (fewer than ``batch_size`` ids).

    Args:
      ids: shape ``(n,)``.
      batch_size: B, the number of streams.

    Returns:
      Shape ``(batch_size, n // batch_size)``: row b is ids ``[b·S, (b+1)·S)``.

    Example:
      >>> import numpy as np
      >>> from jaxrnn.data import batchify
      >>> batchify(np.arange(1, 14), 2)
      array([[ 1,  2,  3,  4,  5,  6],
             [ 7,  8,  9, 10, 11, 12]])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    stream_len = len(ids) // batch_size
    return np.asarray(ids[: stream_len * batch_size]).reshape(batch_size, stream_len)


def num_windows(streams: np.ndarray, seq_len: int) -> int:
    """How many windows of ``seq_len`` inputs (each with its next-character targets) fit.

    Args:
      streams: ``(batch, stream_len)`` ids from ``batchify``.
      seq_len: T, the window's length.

    Returns:
      ``(stream_len - 1) // seq_len``, or 0 if negative: the last character of a
      stream is only ever a target.

    Examples:
      >>> import numpy as np
      >>> from jaxrnn.data import batchify, num_windows
      >>> streams = batchify(np.arange(26), 2)  # (2, 13)
      >>> num_windows(streams, 4), num_windows(streams, 12), num_windows(streams, 13)
      (3, 1, 0)
    """
    if seq_len < 1:
        raise ValueError(f"num_windows: seq_len must be >= 1, got {seq_len}.")
    return max(0, (streams.shape[1] - 1) // seq_len)


def window(streams: np.ndarray, index: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``index``-th window of every stream, time-major, with its targets.

    Args:
      streams: ``(batch, stream_len)`` ids from ``batchify``.
      index: which window, in ``[0, num_windows(streams, seq_len))``.
      seq_len: T, the window's length.

    Returns:
      ``(inputs, targets)``, each ``(seq_len, batch)``: ``targets[t] = inputs[t + 1]``
      within the stream, the last target being the first input of the next window.

    Examples:
      >>> import numpy as np
      >>> from jaxrnn.data import batchify, window
      >>> streams = batchify(np.arange(26), 2)  # rows 0..12 and 13..25
      >>> inputs, targets = window(streams, 1, 4)
      >>> inputs.shape, targets.shape
      ((4, 2), (4, 2))
      >>> inputs.T.tolist()
      [[4, 5, 6, 7], [17, 18, 19, 20]]
      >>> targets.T.tolist()
      [[5, 6, 7, 8], [18, 19, 20, 21]]
    """
    count = num_windows(streams, seq_len)
    if not 0 <= index < count:
        raise IndexError(f"window index {index} outside [0, {count}).")
    start = index * seq_len
    chunk = streams[:, start : start + seq_len + 1]
    return np.ascontiguousarray(chunk[:, :-1].T), np.ascontiguousarray(chunk[:, 1:].T)


class CharData(NamedTuple):
    """A text made ready for truncated BPTT: vocabulary, training and validation streams.

    Attributes:
      vocab: the ``Vocabulary`` of the whole text.
      train: ``(batch, stream_len)`` ids of the training part.
      val: ``(batch, 1 + k·seq_len)`` ids of the held-out part, cut so that its
        windows cover every stream exactly.
      train_ids: the training part as one sequence, shape ``(n_train,)``.
      val_ids: the held-out part as one sequence, shape ``(n_val,)``.
      seq_len: T, the window length.
    """

    vocab: Vocabulary
    train: np.ndarray
    val: np.ndarray
    train_ids: np.ndarray
    val_ids: np.ndarray
    seq_len: int

    @property
    def windows_per_epoch(self) -> int:
        """The number of training windows (steps) in one pass over the training streams."""
        return num_windows(self.train, self.seq_len)


def char_data(
    text: str,
    batch_size: int,
    seq_len: int,
    *,
    val_fraction: float = 0.05,
    eval_batch_size: int | None = None,
    vocab: Vocabulary | None = None,
    name: str = "the text",
) -> CharData:
    """Encodes a text, holds out its tail and cuts both parts into streams.

    Args:
      text: the whole text.
      batch_size: B, the number of training streams.
      seq_len: T, the characters per window.
      val_fraction: the share of the text held out, taken from its end.
      eval_batch_size: the number of validation streams; ``batch_size`` if omitted.
      vocab: a fixed vocabulary (when resuming); built from ``text`` if omitted.
      name: how to call the text in error messages.

    Returns:
      A ``CharData``: ``train`` of shape ``(batch_size, n_train // batch_size)``,
      ``val`` of shape ``(eval_batch, 1 + k·seq_len)`` (``eval_batch`` at most
      ``eval_batch_size``, fewer if the held-out text is short), ``train_ids``
      ``(n_train,)`` and ``val_ids`` ``(n_val,)``.

    Raises:
      ValueError: the text is too short for one training window of every
        stream, or for one validation window; the message gives the minimum.

    Examples:
      >>> from jaxrnn.data import char_data
      >>> data = char_data("abcdefghij" * 10, batch_size=2, seq_len=5, val_fraction=0.2)
      >>> data.vocab.size, data.train.shape, data.val.shape, data.windows_per_epoch
      (10, (2, 40), (2, 6), 7)
      >>> data.vocab.decode(data.train[0, :5])
      'abcde'
      >>> char_data("too short", batch_size=2, seq_len=5)
      Traceback (most recent call last):
        ...
      ValueError: the text has 9 characters, too short for one batch: ...
    """
    sizes = {"batch_size": batch_size, "seq_len": seq_len, "eval_batch_size": eval_batch_size}
    for what, value in sizes.items():
        if value is None and what == "eval_batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"char_data: {what} must be an int >= 1, got {value!r}.")
        if value < 1:
            raise ValueError(f"char_data: {what} must be >= 1, got {value}.")
    vocab = Vocabulary.from_text(text) if vocab is None else vocab
    ids = vocab.encode(text)
    train_ids, val_ids = split_text(ids, val_fraction)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    train = batchify(train_ids, batch_size)
    needed_train = batch_size * (seq_len + 1)
    eval_batch_size = max(1, min(eval_batch_size, len(val_ids) // (seq_len + 1)))
    val = batchify(val_ids, eval_batch_size)
    if num_windows(train, seq_len) < 1 or num_windows(val, seq_len) < 1:
        needed = int(np.ceil(max(needed_train / (1 - val_fraction), (seq_len + 1) / val_fraction)))
        raise ValueError(
            f"{name} has {len(text):,} characters, too short for one batch: "
            f"{batch_size} streams of {seq_len}+1 characters, with {val_fraction:.0%} held out "
            f"for validation, need at least {needed:,}. Use a longer text or a smaller "
            "--batch or --seq-len."
        )
    val = val[:, : 1 + num_windows(val, seq_len) * seq_len]
    return CharData(vocab, train, val, train_ids, val_ids, seq_len)

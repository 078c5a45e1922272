"""The embedded corpus, text files, the vocabulary and the notes' sequence batching."""

import numpy as np
import pytest

from jaxrnn import data


def test_corpus_is_deterministic_printable_and_cut():
    files = data._stdlib_files()
    assert files == data._stdlib_files()  # the seeded shuffle does not depend on the run
    assert not any(part in {"test", "idlelib", "site-packages"} for f in files for part in f.parts)
    text = data.stdlib_corpus("docstrings", max_chars=5000)
    assert len(text) == 5000
    assert set(text) <= data._KEPT_CHARS
    data.stdlib_corpus.cache_clear()
    assert data.stdlib_corpus("docstrings", max_chars=5000) == text


def test_source_corpus_is_python():
    source = data.stdlib_corpus("source", max_chars=20_000)
    assert len(source) == 20_000
    assert "def " in source or "import " in source


def test_corpus_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        data.stdlib_corpus("poems")
    with pytest.raises(ValueError, match="max_chars"):
        data.stdlib_corpus(max_chars=0)


def test_read_text_file_normalises(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffhello\r\nwörld\n".encode())
    assert data.read_text_file(path) == "hello\nwörld\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b" \n\n", "is empty"),
        (b"PK\x03\x04\x00\x00binary", "looks binary"),
        (b"caf\xe9 au lait", "not valid UTF-8 \\(byte 3"),
    ],
)
def test_read_text_file_refuses(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(data.TextFileError, match=message):
        data.read_text_file(path)
    with pytest.raises(data.TextFileError, match="is a directory"):
        data.read_text_file(tmp_path)


def test_vocabulary_round_trip():
    vocab = data.Vocabulary.from_text("hello world")
    assert vocab.chars == (" ", "d", "e", "h", "l", "o", "r", "w")
    ids = vocab.encode("low")
    assert ids.dtype == np.int32 and vocab.decode(ids) == "low"
    assert vocab.missing("held!?") == ["!", "?"]
    with pytest.raises(ValueError, match="outside the vocabulary of 8: '!'"):
        vocab.encode("he!")


def test_batchify_is_the_notes_reshape():
    streams = data.batchify(np.arange(1, 14), 2)
    np.testing.assert_array_equal(streams, [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])


def test_windows_continue_each_stream():
    streams = data.batchify(np.arange(100, dtype=np.int32), 4)  # rows of 25
    assert data.num_windows(streams, 6) == 4  # 24 inputs, each with its target
    first_in, first_out = data.window(streams, 0, 6)
    second_in, _ = data.window(streams, 1, 6)
    assert first_in.shape == (6, 4)  # time-major
    np.testing.assert_array_equal(first_in[:, 1], np.arange(25, 31))
    np.testing.assert_array_equal(first_out, first_in + 1)
    np.testing.assert_array_equal(second_in[0], first_out[-1])  # the carry's next input
    with pytest.raises(IndexError):
        data.window(streams, 4, 6)
    # A window of T inputs needs T + 1 characters: rows of 25 hold 2 of 12, none of 25,
    # and every window that num_windows counts can be cut.
    assert [data.num_windows(streams, t) for t in (12, 24, 25)] == [2, 1, 0]
    for t in (5, 7, 12, 24):
        last_in, last_out = data.window(streams, data.num_windows(streams, t) - 1, t)
        assert last_in.shape == last_out.shape == (t, 4)


def test_sizes_and_ids_are_checked_before_numpy_sees_them():
    vocab = data.Vocabulary.from_text("abc")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\) \(the vocabulary\), got -1"):
        vocab.decode([0, -1])  # would wrap around to "c"
    text = "abcdefghij" * 10
    with pytest.raises(ValueError, match="eval_batch_size must be >= 1, got 0"):
        data.char_data(text, 2, 5, eval_batch_size=0)
    with pytest.raises(TypeError, match=r"seq_len must be an int >= 1, got 2.5"):
        data.char_data(text, 2, 2.5)
    with pytest.raises(ValueError, match="num_windows: seq_len must be >= 1"):
        data.num_windows(data.batchify(np.arange(26), 2), 0)


def test_the_corpus_does_not_depend_on_the_order_the_system_lists_files(monkeypatch):
    listed = data._stdlib_files()
    walk = data.os.walk

    def reversed_walk(root):
        for directory, subdirs, names in walk(root):
            yield directory, subdirs, list(reversed(names))

    monkeypatch.setattr(data.os, "walk", reversed_walk)
    assert data._stdlib_files() == listed


def test_validation_holds_a_window_as_soon_as_the_text_allows_one():
    # 10 held-out characters: one stream of 1 + 5 of them (seq_len + 1 per window).
    char = data.char_data("abcdefghij" * 10, batch_size=4, seq_len=5, val_fraction=0.1)
    assert char.val.shape == (1, 6)


def test_split_text_holds_out_the_tail():
    train, val = data.split_text(np.arange(100), 0.1)
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert len(train) == 90
    train, val = data.split_text(np.arange(19), 0.1)  # 1.9 held out: rounded, not cut
    assert (len(train), len(val)) == (17, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_text(np.arange(10), 1.0)


def test_char_data_shapes():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    d = data.char_data(text, batch_size=4, seq_len=10, val_fraction=0.1)
    assert d.vocab == data.Vocabulary.from_text(text)
    assert d.train.shape[0] == 4 and d.windows_per_epoch == (d.train.shape[1] - 1) // 10
    assert (d.val.shape[1] - 1) % 10 == 0  # the windows cover the validation streams exactly
    assert len(d.train_ids) + len(d.val_ids) == len(text)


def test_char_data_too_short():
    with pytest.raises(ValueError, match=r"too short for one batch.*need at least"):
        data.char_data("abc" * 20, batch_size=8, seq_len=50, name="tiny.txt")

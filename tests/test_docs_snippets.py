"""Every Python block of the README and the docs site runs as printed (docs that cannot drift).

A page's blocks run in order in one namespace, after the set-up the prose around them
implies (``params``, ``loss``, a small ``config``). Each block is listed below, run or
skipped with the reason, so a new block cannot go untested unnoticed.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# What the prose around a page's blocks has already defined.
SMALL_TRAINING = """
import jax
from jaxrnn import data, train

char_data = data.char_data(data.stdlib_corpus("docstrings")[:20_000], batch_size=4, seq_len=8)
model = train.CharModel(train.ModelConfig(vocab_size=char_data.vocab.size, hidden_size=8))
config = train.TrainConfig(batch_size=4, seq_len=8, steps=2)
key, steps = jax.random.key(0), 2
"""
SETUP = {
    "optimizers.md": """
import jax, jax.numpy as jnp, jaxrnn
cell = jaxrnn.gru(4)
params = cell.init(jax.random.key(0), 3)
batch = jnp.ones((5, 2, 3))
loss = lambda params, xs: jnp.sum(jaxrnn.unroll(cell, params, xs)[1] ** 2)
""",
    "interop.md": """
import jax, jax.numpy as jnp, jaxrnn
cell = jaxrnn.lstm(4)
params = cell.init(jax.random.key(0), 3)
xs = jnp.ones((5, 2, 3))
""",
    "training.md": SMALL_TRAINING,
    "scaling.md": SMALL_TRAINING,
}
# (page, block index) -> why it does not run here.
NOT_RUN = {
    ("training.md", 0): "a formula in code: the optimizer the command builds",
    ("training.md", 1): "2000 steps of a 256-unit model (minutes); test_train.py fits",
    ("probes.md", 1): "a sketch of the probe's trick, with elided arguments",
}
# Blocks that need names the page's earlier blocks do not define.
BEFORE_BLOCK = {
    ("probes.md", 2): "grads = jax.grad(lambda p: loss_fn(jaxrnn.unroll(cell, p, xs)[1]))(params)",
}


def pages():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page):
    return PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", [p for p in pages() if blocks(p)], ids=lambda p: p.name)
def test_the_python_blocks_of_a_page_run(page):
    namespace = {"__name__": f"docs_{page.stem}"}
    exec(SETUP.get(page.name, ""), namespace)
    for index, code in enumerate(blocks(page)):
        if (page.name, index) in NOT_RUN:
            continue
        exec(BEFORE_BLOCK.get((page.name, index), ""), namespace)
        exec(compile(code, f"{page.name}, block {index}", "exec"), namespace)


def test_every_block_not_run_exists():
    for page, index in [*NOT_RUN, *BEFORE_BLOCK]:
        assert index < len(blocks(ROOT / "docs" / page)), (page, index)


def test_the_loop_unroll_md_calls_equivalent_is_unroll():
    """docs/unroll.md's Python loop, run, equals ``jaxrnn.unroll`` (in float64)."""
    (code,) = blocks(ROOT / "docs" / "unroll.md")
    namespace = {"jax": jax, "jnp": jnp}
    exec(code, namespace)
    cell = jaxrnn.lstm(5, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (7, 4, 3), jnp.float64)
    lengths = jnp.asarray([7, 3, 0, 5])
    for reverse in (False, True):
        want = jaxrnn.unroll(cell, params, xs, seq_lengths=lengths, reverse=reverse)
        got = namespace["unroll"](cell, params, xs, seq_lengths=lengths, reverse=reverse)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

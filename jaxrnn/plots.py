"""Figures as files: matplotlib's Agg canvas, never a window, and the numbers beside them.

Every function here builds one figure from plain numbers, writes it as a PNG,
and writes the very numbers it plotted as JSON next to it (``fig.png`` and
``fig.json``), so a figure can be checked, diffed and re-plotted without
re-running anything. The figures are drawn on ``matplotlib.figure.Figure``
objects directly: pyplot's global state and GUI backends are never touched,
so this works headless, in threads and in tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from jaxrnn.checkpoint import write_atomically

__all__ = ["cliff_plot", "heatmaps", "line_plot", "save", "to_jsonable", "write_json"]


def to_jsonable(value: Any) -> Any:
    """Arrays to lists, NamedTuples to dicts, NaN or infinity to ``None`` (JSON has neither).

    Floats keep seven significant digits, float32's precision.

    Args:
      value: numbers, arrays, and dicts, lists, tuples and NamedTuples of them.

    Returns:
      The same data made of dicts, lists, strings, ints, floats and ``None``.

    Example:
      >>> import numpy as np
      >>> from jaxrnn import plots
      >>> plots.to_jsonable({"x": np.array([1.0, np.nan]), "n": np.int32(3)})
      {'x': [1.0, None], 'n': 3}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):
        return to_jsonable(value._asdict())
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")
    if array.ndim:
        return [to_jsonable(v) for v in array]
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_):
        return array.item()
    number = float(array)
    # Seven significant digits: float32's precision, and half the size of repr's.
    return float(f"{number:.7g}") if math.isfinite(number) else None


def write_json(path: str | Path, data: Any) -> Path:
    """Writes ``to_jsonable(data)`` to ``path`` (strict, compact JSON) and returns the path.

    The text goes to a temporary file beside ``path``, renamed over it once
    complete (``checkpoint.write_atomically``): a write that fails (a full disk)
    or is killed leaves the earlier file (e.g. the run ``jaxrnn task --out``
    replaces) as it was.
    """
    path = Path(path)
    text = json.dumps(to_jsonable(data), separators=(",", ":"), allow_nan=False) + "\n"
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))
    return path


def save(fig: Figure, path: str | Path, data: Mapping[str, Any]) -> tuple[Path, Path]:
    """Writes ``fig`` as a PNG at ``path`` and ``data`` as JSON beside it (same stem).

    Args:
      fig: a ``matplotlib.figure.Figure``.
      path: where the PNG goes; its folder is created if needed.
      data: the numbers the figure shows.

    Returns:
      ``(png_path, json_path)``.

    Both files are written atomically (``checkpoint.write_atomically``): a write
    that fails or is killed leaves an earlier figure of the same name whole.
    """
    png = Path(path).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(png, lambda file: fig.savefig(file, format="png", dpi=120))
    return png, write_json(png.with_suffix(".json"), data)


def _add_note(fig: Figure, note: str | None) -> None:
    """Small print under the axes, with room kept for it by the layout engine."""
    if note:
        fig.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
        fig.text(0.01, 0.008, note, fontsize=7, color="dimgrey", ha="left", va="bottom")


def _positive(values: Any) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite entries become NaN (not drawn)."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array) & (array > 0), array, np.nan)


def line_plot(
    series: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    yscale: str = "log",
    hlines: Sequence[Mapping[str, Any]] = (),
    note: str | None = None,
) -> tuple[Path, Path]:
    """Curves on one axes, e.g. ‖∂L/∂h_t‖ against t for several cells, log scale.

    Args:
      series: one mapping per curve: ``label``, ``y`` (a sequence), and
        optionally ``x`` (default ``0, 1, ...``), ``style`` (a matplotlib line
        style, default ``"-"``) and ``color``.
      path: the PNG's path; the JSON goes beside it.
      title: the figure's title.
      xlabel: the x axis's label.
      ylabel: the y axis's label.
      yscale: ``"log"`` or ``"linear"``.
      hlines: horizontal reference lines: mappings with ``y``, ``label`` and
        optionally ``color`` and ``style``.
      note: a line of small print under the axes (set-up, hardware).

    Returns:
      ``(png_path, json_path)``. The JSON holds every series and line as given.

    Example:
      >>> import tempfile, pathlib
      >>> from jaxrnn import plots
      >>> folder = pathlib.Path(tempfile.mkdtemp())
      >>> png, js = plots.line_plot([{"label": "a", "y": [1.0, 0.1, 0.01]}], folder / "a.png",
      ...                           title="decay", xlabel="t", ylabel="norm")
      >>> png.exists(), js.name
      (True, 'a.json')
    """
    data = {
        "kind": "line_plot",
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "yscale": yscale,
        "note": note,
        "series": [
            {
                "label": str(s["label"]),
                "x": list(np.asarray(s.get("x", np.arange(len(s["y"])))).tolist()),
                "y": np.asarray(s["y"], dtype=float).tolist(),
                "style": s.get("style", "-"),
                "color": s.get("color"),
            }
            for s in series
        ],
        "hlines": [
            {
                "label": str(h["label"]),
                "y": float(h["y"]),
                "style": h.get("style", ":"),
                "color": h.get("color", "grey"),
            }
            for h in hlines
        ],
    }
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for s in data["series"]:
        y = _positive(s["y"]) if yscale == "log" else np.asarray(s["y"], dtype=float)
        ax.plot(s["x"], y, s["style"], label=s["label"], color=s["color"], linewidth=1.4)
    for h in data["hlines"]:
        ax.axhline(h["y"], linestyle=h["style"], color=h["color"], label=h["label"])
    ax.set_yscale(yscale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _add_note(fig, note)
    return save(fig, path, data)


def heatmaps(
    panels: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    xlabel: str = "time step t",
    ylabel: str = "training step",
    colorbar_label: str = "‖∂L/∂h_t‖",
    note: str | None = None,
) -> tuple[Path, Path]:
    """Side-by-side heat maps on a shared log colour scale, e.g. ‖∂L/∂h_t‖ over steps × t.

    Args:
      panels: one mapping per panel: ``label``, ``rows`` (the y values, e.g.
        training steps, length R), ``columns`` (the x values, length C) and
        ``values`` (R × C, positive; others are left blank).
      path: the PNG's path; the JSON goes beside it.
      title: the figure's title.
      xlabel: the x axis's label.
      ylabel: the y axis's label.
      colorbar_label: what the colours mean.
      note: a line of small print under the axes.

    Returns:
      ``(png_path, json_path)``.
    """
    data = {
        "kind": "heatmaps",
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "colorbar_label": colorbar_label,
        "note": note,
        "panels": [
            {
                "label": str(p["label"]),
                "rows": np.asarray(p["rows"]).tolist(),
                "columns": np.asarray(p["columns"]).tolist(),
                "values": np.asarray(p["values"], dtype=float).tolist(),
            }
            for p in panels
        ],
    }
    finite = [v for p in data["panels"] for v in _positive(p["values"]).ravel() if np.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (1e-12, 1.0)
    norm = LogNorm(vmin=max(low, high * 1e-30), vmax=high)
    fig = Figure(figsize=(4.2 * len(panels) + 1.2, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, p in zip(axes, data["panels"], strict=True):
        rows, columns = np.asarray(p["rows"], float), np.asarray(p["columns"], float)
        image = ax.pcolormesh(
            columns, rows, _positive(p["values"]), norm=norm, cmap="viridis", shading="nearest"
        )
        ax.set_title(p["label"])
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=colorbar_label)
    fig.suptitle(title)
    _add_note(fig, note)
    return save(fig, path, data)


def cliff_plot(
    w: Sequence[float],
    b: Sequence[float],
    loss: Any,
    grad_norm: Any,
    paths: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    note: str | None = None,
) -> tuple[Path, Path]:
    """A loss surface and its gradient norm over a (w, b) grid, with descent paths on both.

    Args:
      w: the grid's w values (length W, the x axis).
      b: the grid's b values (length B, the y axis).
      loss: the loss at every grid point, shape (B, W).
      grad_norm: ‖∇L‖ at every grid point, shape (B, W).
      paths: mappings with ``label``, ``w`` and ``b`` (the points visited) and
        optionally ``color`` and ``style``.
      path: the PNG's path; the JSON goes beside it.
      title: the figure's title.
      note: a line of small print under the axes.

    Returns:
      ``(png_path, json_path)``.
    """
    data = {
        "kind": "cliff_plot",
        "title": title,
        "note": note,
        "w": np.asarray(w, float).tolist(),
        "b": np.asarray(b, float).tolist(),
        "loss": np.asarray(loss, float).tolist(),
        "grad_norm": np.asarray(grad_norm, float).tolist(),
        "paths": [
            {
                "label": str(p["label"]),
                "w": np.asarray(p["w"], float).tolist(),
                "b": np.asarray(p["b"], float).tolist(),
                "color": p.get("color"),
                "style": p.get("style", "-"),
            }
            for p in paths
        ],
    }
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("loss", "loss L(w, b)"), ("grad_norm", "gradient norm ‖∇L(w, b)‖"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = _positive(data[key])
        finite = values[np.isfinite(values)]
        norm = LogNorm(vmin=max(finite.min(), finite.max() * 1e-12), vmax=finite.max())
        image = ax.pcolormesh(data["w"], data["b"], values, norm=norm, shading="nearest")
        fig.colorbar(image, ax=ax, label=label)
        for p in data["paths"]:
            ax.plot(p["w"], p["b"], p["style"], color=p["color"], label=p["label"], markersize=3)
            ax.plot(p["w"][:1], p["b"][:1], "o", color=p["color"], markersize=5)
        ax.set_xlim(min(data["w"]), max(data["w"]))
        ax.set_ylim(min(data["b"]), max(data["b"]))
        ax.set_xlabel("w")
        ax.set_ylabel("b")
        ax.set_title(label)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    _add_note(fig, note)
    return save(fig, path, data)

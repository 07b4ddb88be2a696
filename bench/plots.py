"""Figures for the benchmark reports, drawn without a display (matplotlib imported only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def figure(size: tuple[float, float], panels: int = 1) -> tuple[Any, Any]:
    """A figure and its axes (side by side), drawn without a display (matplotlib imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, panels, figsize=size)


def save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""What every benchmark does around its tables: progress while measuring, markdown after."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.progress import Progress

Section = tuple[str, str, Callable[[Progress], list[str]]]  # heading, what was measured, table maker


def run_sections(sections: list[Section], plots: Path) -> int:
    """Measure every section with a progress bar, then print each as a markdown section."""
    plots.mkdir(parents=True, exist_ok=True)
    with Progress(transient=True) as progress:
        tables = [(heading, intro, make(progress)) for heading, intro, make in sections]
    for n, (heading, intro, lines) in enumerate(tables):
        print(("\n" if n else "") + f"## {heading}\n")
        if intro:
            print(intro + "\n")
        print("\n".join(lines))
    print(f"\nplots: {plots}/")
    return 0

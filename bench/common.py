"""What every benchmark does at the end: print its tables as markdown sections."""

from __future__ import annotations

from pathlib import Path


def print_sections(sections: list[tuple[str, str, list[str]]], plots: Path | None = None) -> None:
    """Each section: a heading, a line saying what was measured, and the table's lines."""
    for n, (heading, intro, lines) in enumerate(sections):
        print(("\n" if n else "") + f"## {heading}\n")
        if intro:
            print(intro + "\n")
        print("\n".join(lines))
    if plots is not None:
        print(f"\nplots: {plots}/")

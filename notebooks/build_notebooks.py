"""Builds the notebooks in this folder from their percent-format sources in `sources/`.

Each `sources/<name>.py` is a plain Python file split into cells by `# %%` lines (a code cell) and
`# %% [markdown]` lines (a markdown cell whose lines are `# `-prefixed comments), the format
Jupytext calls "percent". The sources are what we edit and review; the `.ipynb` files beside this
script are generated from them without outputs and committed, so a notebook opens ready to run.

    python notebooks/build_notebooks.py          # rewrite every notebook from its source
    python notebooks/build_notebooks.py --check  # exit 1 if a notebook is out of date
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

NOTEBOOKS = pathlib.Path(__file__).resolve().parent
SOURCES = NOTEBOOKS / "sources"
CELL_MARKER = "# %%"
MARKDOWN_MARKER = "# %% [markdown]"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _markdown_text(lines: list[tuple[int, str]], origin: str) -> str:
    """Strips the `# ` comment prefix from the (line number, line) pairs of a markdown cell."""
    text = []
    for number, line in lines:
        if line.rstrip() in ("", "#"):
            text.append("")
        elif line.startswith("# "):
            text.append(line[2:])
        else:
            raise ValueError(
                f"{origin}:{number}: a markdown cell line must start with '# ', got {line!r}"
            )
    return "\n".join(text).strip("\n")


def parse_cells(source: str, origin: str = "<source>") -> list[nbformat.NotebookNode]:
    """Splits percent-format `source` into notebook cells.

    Args:
        source: the text of a `sources/<name>.py` file.
        origin: the file name used in error messages.

    Returns:
        The code and markdown cells, in order; empty cells are dropped.
    """
    cells: list[nbformat.NotebookNode] = []
    kind: str | None = None
    lines: list[tuple[int, str]] = []

    def flush() -> None:
        if kind is None:
            if any(line.strip() for _, line in lines):
                raise ValueError(f"{origin}: text before the first '{CELL_MARKER}' line")
            return
        if kind == "markdown":
            text = _markdown_text(lines, origin)
            if text:
                cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            text = "\n".join(line for _, line in lines).strip("\n")
            if text:
                cells.append(nbformat.v4.new_code_cell(text))

    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith(CELL_MARKER):
            flush()
            marker = line.rstrip()
            if marker not in (CELL_MARKER, MARKDOWN_MARKER):
                raise ValueError(
                    f"{origin}:{number}: unknown cell marker {marker!r}; expected "
                    f"{CELL_MARKER!r} or {MARKDOWN_MARKER!r}"
                )
            kind, lines = ("markdown" if marker == MARKDOWN_MARKER else "code"), []
        else:
            lines.append((number, line))
    flush()
    return cells


def build(source_path: pathlib.Path) -> nbformat.NotebookNode:
    """The notebook (no outputs) generated from one source file."""
    cells = parse_cells(source_path.read_text(), origin=source_path.name)
    notebook = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    # Stable cell ids keep regenerated notebooks byte-identical when the source is unchanged.
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{source_path.stem}-{index:02d}"
    nbformat.validate(notebook)
    return notebook


def notebook_text(source_path: pathlib.Path) -> str:
    """The `.ipynb` file content generated from `source_path`."""
    return nbformat.writes(build(source_path)) + "\n"


def source_paths() -> list[pathlib.Path]:
    """The notebook sources, sorted by name."""
    return sorted(SOURCES.glob("*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="report out-of-date notebooks instead of writing them"
    )
    args = parser.parse_args(argv)
    stale = []
    for source in source_paths():
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        text = notebook_text(source)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(text)
    if args.check and stale:
        print(f"out of date (run python notebooks/build_notebooks.py): {', '.join(stale)}")
        return 1
    if not args.check:
        print(f"wrote {len(stale)} notebook(s)" + (f": {', '.join(stale)}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

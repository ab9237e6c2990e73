"""tools/run_notebooks.py: the table, and a clear report of a failing notebook."""

from __future__ import annotations

import subprocess
import sys

import nbformat

from conftest import ROOT


def _write(folder, name, sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)


def test_table_and_failing_cell_are_reported(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    _write(src, "01_ok.ipynb", ["x = 1 + 1", "print(x)"])
    _write(src, "02_broken.ipynb", ["y = 2", "raise ValueError('the lesson broke here')"])
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), str(src),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode == 1
    assert "| 01_ok.ipynb" in out.stdout and "| ok " in out.stdout and "FAILED" in out.stdout
    assert "raise ValueError('the lesson broke here')" in out.stderr  # the failing cell
    assert "ValueError: the lesson broke here" in out.stderr  # and its error
    assert (tmp_path / "out" / "01_ok.ipynb").exists()


def test_no_matching_notebook_is_an_error(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "No notebooks" in out.stderr

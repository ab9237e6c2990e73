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
    # a newcomer sees the lessons, their times and the table: no kernel log lines
    assert "[IPKernelApp]" not in out.stdout + out.stderr


def test_no_matching_notebook_is_an_error(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "No notebooks" in out.stderr


def test_kernels_import_this_checkout_without_an_install(tmp_path, monkeypatch):
    """On a GPU machine given only the wheels (no `pip install -e .`), the kernels still find
    `yi_helpers`: the repository comes first on their PYTHONPATH, the caller's path after it,
    and the caller's environment is left as it was."""
    import os

    import run_notebooks  # tools/ is on sys.path (conftest)

    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    src = tmp_path / "nbs"
    src.mkdir()
    _write(src, "01_path.ipynb", ["import os, yi_helpers\n"
                                  "print(os.environ['PYTHONPATH'])\n"
                                  "print(yi_helpers.__file__)"])
    result = run_notebooks.run(src / "01_path.ipynb", tmp_path / "out", {})
    assert result["status"] == "ok", result["error"]
    printed = nbformat.read(result["output"], as_version=4).cells[0].outputs[0]["text"].split()
    assert printed[0] == os.pathsep.join([str(ROOT), "/somewhere/else"])
    assert printed[1].startswith(str(ROOT / "yi_helpers"))
    assert os.environ["PYTHONPATH"] == "/somewhere/else"

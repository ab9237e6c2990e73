"""Execute every notebook with papermill and print a table: notebook, seconds, status.

    python tools/run_notebooks.py notebooks --out build/notebooks [-p QUICK True] [-k 02]

Notebooks run one at a time (two torch processes on a small CPU slow each other down badly).
A failing notebook prints the failing cell and its error, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def failing_cell(nb_path: Path) -> tuple[str, str]:
    """(source, error) of the first cell with an error output in an executed notebook."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return "".join(cell.get("source", "")), f"{out.get('ename')}: {out.get('evalue')}"
    return "", ""


def discover(folder: Path, match: str = "") -> list[Path]:
    """The lesson notebooks (``NN_topic.ipynb``) in ``folder``, in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb") if match in p.name)


@contextlib.contextmanager
def repo_on_kernel_path(root: Path = ROOT):
    """Put the repository first on ``PYTHONPATH`` for the kernels started inside the block, so
    the notebooks import this checkout's ``yi_helpers`` even where the package is not installed
    (a GPU machine given only the wheels of ``tools/wheels.py``); restored afterwards."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root)] + ([before] if before else []))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def run(notebook: Path, out_dir: Path, parameters: dict, kernel: str = "python3",
        timeout: int = 900) -> dict:
    """Execute one notebook into ``out_dir``; never raises for a failing cell.

    Returns notebook, seconds, status ("ok" or "FAILED"), error, the failing cell, output path.
    """
    import papermill as pm

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    output = Path(out_dir) / notebook.name
    start = time.perf_counter()
    status, error, source = "ok", "", ""
    try:
        with repo_on_kernel_path():
            pm.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                cwd=str(notebook.parent), progress_bar=False, execution_timeout=timeout,
                # the kernel's own log: errors only. Its one warning per start ("running over
                # TCP without encryption") concerns ports on 127.0.0.1 of this machine, where
                # the kernel listens, and would print one line per notebook for nothing to do.
                extra_arguments=["--log-level=ERROR"],
            )
    except Exception as exc:  # papermill raises PapermillExecutionError for a failed cell
        status = "FAILED"
        source, error = failing_cell(output) if output.exists() else ("", "")
        if not error:
            error = f"{type(exc).__name__}: {exc}"
    return {"notebook": notebook.name, "seconds": time.perf_counter() - start,
            "status": status, "error": error, "cell": source, "output": str(output)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("notebooks"))
    parser.add_argument("--out", type=Path, default=Path("build/notebooks"))
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="papermill parameter, e.g. -p QUICK True")
    parser.add_argument("-k", "--match", default="", help="only notebooks whose name contains this")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)

    notebooks = discover(args.folder, args.match)
    if not notebooks:
        print(f"No notebooks matching '{args.match}' in {args.folder}", file=sys.stderr)
        return 2
    parameters = {name: _parse_value(value) for name, value in args.param}

    results = []
    for nb in notebooks:
        print(f"running {nb.name} ...", flush=True)
        results.append(run(nb, args.out, parameters, args.kernel, args.timeout))

    width = max(len(r["notebook"]) for r in results)
    print()
    print(f"| {'notebook':<{width}} | seconds | status |")
    print(f"|{'-' * (width + 2)}|---------|--------|")
    for r in results:
        print(f"| {r['notebook']:<{width}} | {r['seconds']:7.1f} | {r['status']:<6} |")
    print(f"\nExecuted notebooks are in {args.out}/")
    failed = [r for r in results if r["status"] != "ok"]
    for r in failed:
        print(f"\n=== {r['notebook']} failed ===", file=sys.stderr)
        if r["cell"]:
            print("--- failing cell ---", file=sys.stderr)
            print(r["cell"], file=sys.stderr)
        print(f"--- error ---\n{r['error']}", file=sys.stderr)
        print(f"(full output: {r['output']})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

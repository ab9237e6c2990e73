"""JupyterLab on the lessons, as `make lab` starts it: on this machine only, as root too, quiet.

    python tools/lab.py [JUPYTER LAB OPTIONS]   # what `make lab` runs (LAB_ARGS="..." adds options)

- It listens on 127.0.0.1 only (`--ServerApp.ip`): on a workshop's shared network, no one else
  reaches a learner's kernels.
- As root (a container such as Yi's own Docker image, CI) it adds `--allow-root`: JupyterLab
  otherwise stops with "Running as root is not recommended".
- No news pop-up and no update check: JupyterLab 4 asks on its first start whether to fetch
  Jupyter's news, and checks PyPI for newer versions. The hub turns both settings off by default
  (:data:`SETTINGS`, written to this environment's ``share/jupyter/lab/settings/overrides.d/``, so
  they hold for any `jupyter lab` of the venv; a learner can still turn them on in Settings), and
  starts the server with the news feed and the update check switched off: nothing is fetched from
  the internet at start (the Extension Manager asks PyPI only when a learner opens it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: The defaults the hub gives JupyterLab's settings: plugin id -> {setting: value}.
SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                            "checkForUpdates": False}}
#: Server options: loopback only; no news feed, no update check (the server side of SETTINGS).
SERVER_OPTIONS = ("--ServerApp.ip=127.0.0.1", "--LabApp.news_url=None",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")


def is_root() -> bool:
    """Whether this process runs as root (never on Windows, which has no such user)."""
    return getattr(os, "geteuid", lambda: 1)() == 0


def settings_file(prefix: str | Path = sys.prefix) -> Path:
    """Where the hub's setting defaults go: JupyterLab reads every ``overrides.d/*.json`` of its
    application settings folder (``<prefix>/share/jupyter/lab/settings``)."""
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "yi-hub.json"


def write_settings(prefix: str | Path = sys.prefix) -> Path:
    """Write :data:`SETTINGS` for the JupyterLab of ``prefix`` (unchanged files are left alone)."""
    path = settings_file(prefix)
    text = json.dumps(SETTINGS, indent=2) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def command(extra: list[str] | tuple[str, ...] = (), root: bool | None = None,
            notebooks: Path = NOTEBOOKS) -> list[str]:
    """The `jupyter lab` command line: this Python's JupyterLab, :data:`SERVER_OPTIONS`,
    ``--allow-root`` as root, then ``extra`` (later options win), on ``notebooks``."""
    root = is_root() if root is None else root
    return [sys.executable, "-m", "jupyter", "lab", *SERVER_OPTIONS,
            *(["--allow-root"] if root else []), *extra, str(notebooks)]


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in extra):
        print(__doc__)
        return 0
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print("JupyterLab is not installed in this Python: run `make setup` (the dev extra "
              "brings it)", file=sys.stderr)
        return 1
    write_settings()
    cmd = command(extra)
    if os.name == "posix":  # JupyterLab takes this process's place: Ctrl-C reaches it directly
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())

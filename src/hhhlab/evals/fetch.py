"""``hhhlab data fetch bigbench``: the BIG-bench task files our evals use, from PyPI.

BIG-bench's JSON tasks ship inside the ``bigbench==1.0.0`` sdist (358 MB, no model hub needed).
We download it with pip, without dependencies and without building it
(``pip download --no-deps --no-binary :all:``), check its sha256, and keep only the task files
our evals read — hhh_alignment, truthful_qa, bbq_lite_json — under
``$HHHLAB_CACHE/data/bigbench/`` (the layout of shared/data, so evals find them without
``--data-dir``), with a ``MANIFEST.json`` of each file's sha256. Files are read from the archive
by name from a fixed list of patterns; nothing in the archive is executed or extracted blindly.
"""

from __future__ import annotations

import fnmatch
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import typer

from hhhlab.errors import DataError
from hhhlab.evals.sources import cache_data_dir
from hhhlab.store import atomic_write_json, sha256_file

SDIST = "bigbench==1.0.0"
SDIST_FILE = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS_ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks/"
KEEP = (
    "hhh_alignment/task.json", "hhh_alignment/*/task.json",
    "truthful_qa/task_mc.json", "truthful_qa/questions.json",
    "bbq_lite_json/task.json", "bbq_lite_json/*/task.json",
)



def download_sdist(dest: Path) -> Path:
    """``pip download`` the sdist into ``dest`` (no dependencies, no wheels)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = dest / SDIST_FILE
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataError(f"could not download {SDIST} from PyPI ({' | '.join(tail)}); download {SDIST_FILE} "
                        "yourself and pass it with --sdist")
    return path


def extract_tasks(sdist: Path, out_dir: Path, *, expected_sha256: str | None = SDIST_SHA256) -> dict:
    """Copy the task files matching ``KEEP`` from the sdist into ``out_dir``; return the manifest."""
    digest = sha256_file(sdist)
    if expected_sha256 and digest != expected_sha256:
        raise DataError(f"{sdist}: sha256 {digest} is not that of {SDIST_FILE} on PyPI ({expected_sha256})")
    files: dict[str, str] = {}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(TASKS_ROOT):
                    continue
                rel = member.name[len(TASKS_ROOT):]
                if ".." in Path(rel).parts or not any(fnmatch.fnmatchcase(rel, pat) for pat in KEEP):
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
                files[rel] = hashlib.sha256(data).hexdigest()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{sdist}: cannot read the archive ({exc})") from None
    if not any(rel.startswith("hhh_alignment/") for rel in files):
        raise DataError(f"{sdist}: no BIG-bench task files under {TASKS_ROOT} (is this the bigbench sdist?)")
    manifest = {"source": f"PyPI {SDIST} ({SDIST_FILE})", "sdist_sha256": digest, "files": dict(sorted(files.items()))}
    atomic_write_json(out_dir / "MANIFEST.json", manifest)
    return manifest


def verify(out_dir: Path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (or that are missing)."""
    from hhhlab.store import read_json

    manifest = read_json(out_dir / "MANIFEST.json")
    bad = []
    for rel, digest in manifest["files"].items():
        p = out_dir / rel
        if not p.exists() or sha256_file(p) != digest:
            bad.append(rel)
    return bad


def fetch_cmd(
    name: str = typer.Argument(..., help="what to fetch: bigbench"),
    sdist: Path = typer.Option(None, "--sdist", help=f"use a {SDIST_FILE} you already have instead of PyPI"),
    out: Path = typer.Option(None, "--out", help="data folder to write (default: $HHHLAB_CACHE/data)"),
    check: bool = typer.Option(False, "--verify", help="only check the fetched files against the manifest"),
) -> None:
    """Fetch eval data that is not on the model hub: ``bigbench`` (task files from the PyPI sdist)."""
    from rich.console import Console

    console = Console()
    if name != "bigbench":
        raise DataError(f"unknown dataset {name!r}: `hhhlab data fetch` knows bigbench")
    out_dir = (out or cache_data_dir()) / "bigbench"
    if check:
        bad = verify(out_dir)
        if bad:
            raise DataError(f"{out_dir}: {len(bad)} file(s) do not match MANIFEST.json: {', '.join(bad[:5])}")
        console.print(f"{out_dir}: all files match MANIFEST.json")
        return
    if sdist is None:
        with tempfile.TemporaryDirectory(prefix="hhhlab-bigbench-") as tmp:
            console.print(f"downloading {SDIST} from PyPI (about 360 MB, no dependencies)...")
            manifest = extract_tasks(download_sdist(Path(tmp)), out_dir)
    else:
        if not sdist.exists():
            raise DataError(f"{sdist}: file not found")
        manifest = extract_tasks(sdist, out_dir, expected_sha256=None)
        if manifest["sdist_sha256"] != SDIST_SHA256:
            console.print(f"[yellow]note:[/] {sdist} is not the PyPI {SDIST_FILE} (sha256 differs); "
                          "its files are recorded in the manifest as they are")
    console.print(f"kept {len(manifest['files'])} task files in {out_dir} (sha256 in MANIFEST.json)")


def register_fetch(data_app: typer.Typer) -> None:
    data_app.command("fetch")(fetch_cmd)

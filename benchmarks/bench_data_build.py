"""Benchmark: build ../shared/data's StackExchange dumps and HH-RLHF files; records/s and peak RSS.

    python benchmarks/bench_data_build.py [--data ../shared/data] [--scale 1,8]

Each build runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own. Input
records are the XML rows / JSON lines read; output groups are what was written.

``--scale`` also builds a synthetic StackExchange dump made of N copies of the real beer dump
(ids shifted, so every copy is new data): if the builder streams, peak RSS stays flat while the
input grows N-fold. The target (issue 4): both real sets together in under a minute.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
from hhhlab.data.build import BuildOptions, build
source, inp, out = sys.argv[1:4]
t0 = time.perf_counter()
r = build(source, inp, out, BuildOptions())
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "written": r.written, "rejected": r.rejected, "skipped": sum(r.skipped.values()),
                  "duplicates": r.duplicates, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def count_input_records(source: str, path: Path) -> int:
    import gzip

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".md")
                                                 and not p.name.startswith("LICENSE"))
    n = 0
    for f in files:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rb") as fh:
            if source == "stackexchange":
                n += sum(line.lstrip().startswith(b"<row") for line in fh)
            else:
                n += sum(1 for line in fh if line.strip())
    return n


def run_build(source: str, inp: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, source, str(inp), str(out)], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"build of {source} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthetic_dump(src: Path, copies: int, dest: Path) -> None:
    """``copies`` copies of a Posts.xml with ids shifted and bodies marked per copy (so that
    de-duplication keeps every copy), as one well-formed dump."""
    rows = [line for line in src.read_text(encoding="utf-8-sig").splitlines() if line.lstrip().startswith("<row")]
    shift = re.compile(r'\b(Id|ParentId|AcceptedAnswerId)="(\d+)"')
    with dest.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for c in range(copies):
            off = c * 10_000_000
            for row in rows:
                row = shift.sub(lambda m, off=off: f'{m.group(1)}="{int(m.group(2)) + off}"', row)
                f.write(row.replace(' Body="', f' Body="(copy {c}) ', 1) + "\n")
        f.write("</posts>\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scale", default="1,8", help="copies of the beer dump for the streaming check ('' to skip)")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found (pass --data)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        total_s = 0.0
        print(f"{'build':<28}{'input recs':>11}{'groups':>8}{'seconds':>9}{'recs/s':>9}{'groups/s':>9}{'peak RSS MB':>12}")
        for source, folder in (("stackexchange", "stackexchange"), ("hh-rlhf", "hh-rlhf")):
            inp = args.data / folder
            n_in = count_input_records(source, inp)
            r = run_build(source, inp, tmp / f"{source}.jsonl")
            total_s += r["seconds"]
            print(f"{source:<28}{n_in:>11}{r['written']:>8}{r['seconds']:>9.2f}{n_in / r['seconds']:>9.0f}"
                  f"{r['written'] / r['seconds']:>9.0f}{r['peak_rss_mb']:>12.0f}")
        print(f"both real sets: {total_s:.1f} s (target < 60 s): {'OK' if total_s < 60 else 'TOO SLOW'}")
        if args.scale:
            beer = args.data / "stackexchange" / "beer.stackexchange.com.Posts.xml"
            for copies in (int(x) for x in args.scale.split(",")):
                dump = tmp / f"x{copies}.Posts.xml"
                synthetic_dump(beer, copies, dump)
                n_in = count_input_records("stackexchange", dump)
                r = run_build("stackexchange", dump, tmp / f"x{copies}.jsonl")
                mb = dump.stat().st_size / 2**20
                print(f"{f'synthetic beer x{copies} ({mb:.0f} MB)':<28}{n_in:>11}{r['written']:>8}{r['seconds']:>9.2f}"
                      f"{n_in / r['seconds']:>9.0f}{r['written'] / r['seconds']:>9.0f}{r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()

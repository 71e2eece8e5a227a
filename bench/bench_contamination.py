"""Contamination check against a large corpus: the whole Python standard library of this machine as
`contamination.corpus`, the defect task's test split indexed. Prints the corpus size, the wall time
and the child's peak RSS (the README quotes them): the corpus is streamed file by file, so memory
follows the test split, not the corpus.

    .venv/bin/python bench/bench_contamination.py
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def main() -> None:
    corpus = Path(sysconfig.get_paths()["stdlib"]).resolve().parent  # lib/python3.x and its site-packages
    files = [p for p in corpus.rglob("*.py") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "harness.contamination", "task=defect", "tracker=none",
                               f"contamination.corpus={corpus}", "contamination.corpus_extensions=[.py]",
                               f"contamination.out_dir={out}"], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    found = json.loads(done.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    print(f"corpus {corpus}: {len(files):,} .py files, {size / 2**20:,.0f} MiB")
    print(f"contamination task=defect vs the corpus: {seconds:.0f} s, peak RSS {peak / 2**20:,.0f} MiB, "
          f"corpus_near_duplicates {found.get('corpus_near_duplicates')}")


if __name__ == "__main__":
    main()

"""Write-path figures (issue 13):

1. a small upload into a library of 10 documents vs one of 1,000 (seconds, median of 3;
   the libraries are built first and the uploads alternate between them, so a busy machine
   slows both alike and their ratio stays meaningful);
2. seconds of 503 after a corrupted generation: `qa serve` started on a data dir whose
   current generation fails its checksum, polled until /ask answers.

    python bench/write.py [--sizes 10 1000] [--repeat 3] [--skip-corrupt]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.settings import REPO_ROOT, Settings  # noqa: E402

MODELS = Path(os.environ.get("QA_MODEL_CACHE") or REPO_ROOT / ".qa-data" / "test" / "models")
PLACES = "甲乙丙丁戊己庚辛壬癸"


def doc(i: int) -> bytes:
    place = PLACES[i % 10] + PLACES[(i // 10) % 10] + PLACES[(i // 100) % 10] + "县"
    return (f"2025年{place}教育工作要点\n一、学前教育\n1.新建公办幼儿园{i % 7 + 1}所，新增学位{100 + i}个。\n"
            f"二、义务教育\n1.推进集团化办学，新组建教育集团{i % 5 + 1}个。\n").encode()


def library(n: int, root: Path, embedder) -> Settings:
    from qa.store import Store

    s = Settings(data_dir=root, model_cache=MODELS)
    shutil.copytree(REPO_ROOT / ".qa-data" / "test" / "index", root / "index")  # the seeds' index: not re-embedded
    uploads = [(f"lib{i:04d}.txt", doc(i)) for i in range(max(0, n - 5))]  # + the 5 seeds
    store = Store(s)
    store.open(embedder, progress=False)
    for a in range(0, len(uploads), 250):
        store.add(embedder, uploads[a : a + 250], progress=False)
    return s


def upload_seconds(s: Settings, embedder, repeat: int) -> list[float]:
    from qa.service import Service

    svc = Service.load(s, embedder=embedder)
    times = []
    for r in range(repeat):
        t0 = time.perf_counter()
        svc, _ = svc.add([(f"new{r}.txt", doc(5000 + r))])
        times.append(time.perf_counter() - t0)
    assert len(svc.index.docs) >= repeat
    return times


def interleaved_uploads(libraries: dict[int, Settings], embedder, repeat: int) -> dict[int, list[float]]:
    """One small upload into each library in turn, `repeat` rounds."""
    from qa.service import Service

    services = {n: Service.load(s, embedder=embedder) for n, s in libraries.items()}
    times: dict[int, list[float]] = {n: [] for n in libraries}
    for r in range(repeat):
        for n in libraries:
            t0 = time.perf_counter()
            services[n], _ = services[n].add([(f"new{r}.txt", doc(5000 + r))])
            times[n].append(time.perf_counter() - t0)
    return times


def seconds_of_503(s: Settings, corrupt: bool = True) -> float:
    """From the server's first 503 to the first answered /ask (start-up included)."""
    import httpx

    from qa.store import Store

    gen = Store(s).live_path()
    if corrupt:
        with open(gen / "segment" / "vectors.npy", "r+b") as f:  # the last write's own segment
            f.seek(-8, 2)
            f.write(b"\x7f" * 8)
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    env = dict(os.environ, QA_DATA_DIR=str(s.data_dir), QA_MODEL_CACHE=str(MODELS))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_503 = None
        while time.monotonic() - t0 < 300:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/ask", json={"question": "新增学位"}, timeout=5)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if r.status_code == 503 and first_503 is None:
                first_503 = time.monotonic()
            if r.status_code == 200:
                return time.monotonic() - (first_503 or time.monotonic())
            time.sleep(0.05)
        raise SystemExit("the server never answered")
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-corrupt", action="store_true")
    args = p.parse_args()
    from embeddings import Embedder

    embedder = Embedder(Settings(data_dir=Path(tempfile.gettempdir()), model_cache=MODELS), progress=False)
    results, libraries, built = {}, {}, {}
    try:
        for n in args.sizes:
            root = Path(tempfile.mkdtemp(prefix=f"qa-write-{n}-"))
            t0 = time.perf_counter()
            libraries[n] = library(n, root, embedder)
            built[n] = time.perf_counter() - t0
        times = interleaved_uploads(libraries, embedder, args.repeat)
        for n in args.sizes:
            results[n] = statistics.median(times[n])
            print(json.dumps({"library_documents": n, "small_upload_s": round(results[n], 3),
                              "runs": [round(t, 3) for t in times[n]], "library_built_s": round(built[n], 1)}), flush=True)
        n = args.sizes[-1]
        if not args.skip_corrupt:
            s = libraries[n]
            normal = seconds_of_503(s, corrupt=False)
            print(json.dumps({"library_documents": n + args.repeat, "seconds_of_503_normal_start": round(normal, 2),
                              "seconds_of_503_after_corrupted_generation": round(seconds_of_503(s), 2)}), flush=True)
    finally:
        for s in libraries.values():
            shutil.rmtree(s.data_dir, ignore_errors=True)
    if len(results) >= 2:
        a, b = results[min(results)], results[max(results)]
        print(f"small upload: {a:.3f} s into {min(results)} documents, {b:.3f} s into {max(results)} ({b / a:.2f}x)")


if __name__ == "__main__":
    main()

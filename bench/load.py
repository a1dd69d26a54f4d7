"""Bounded load test on loopback: N /ask at concurrency C against a real `qa serve`,
with documents uploaded and deleted meanwhile. Prints errors, latency percentiles,
throughput and the server's resident memory after warm-up and after the run.

    python bench/load.py [--requests 2000] [--concurrency 16] [--uploads 10] [--json]

The server runs on a copy of the index in a temporary data dir (the model cache is
shared), so the real data dir is never touched. Exit status 1 when any request
failed or memory grew by more than --max-growth (default 10%).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY = "load-test-key"
UPLOAD = (
    "2025年某县教育工作要点\n一、学前教育\n1.新建公办幼儿园{n}所，新增学位1200个。托育服务覆盖率达到60%。\n"
    "二、义务教育\n1.推进集团化办学，新组建教育集团3个。\n2.全县中小学课后服务参与率保持在95%以上。\n"
)


def questions() -> list[str]:
    from qa.evaluate import default_files, load_questions

    qs = [q["question"] for f in default_files() for q in load_questions(f)]
    return qs or ["普惠性幼儿园覆盖率"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, model_cache: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, QA_DATA_DIR=str(data_dir), QA_MODEL_CACHE=str(model_cache), QA_API_KEY=KEY,
               QA_ANSWER_CACHE="0")  # every request takes the full path
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited while starting")
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready in 300 s")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


async def run(base: str, n: int, concurrency: int, uploads: int, qs: list[str]) -> dict:
    errors: list[str] = []
    latencies: list[float] = []
    upload_ms: list[float] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def asker():
            for i in counter:
                q = qs[i % len(qs)]
                t = time.perf_counter()
                try:
                    r = await client.post("/ask", json={"question": q, "top_k": 5})
                    ok = r.status_code == 200 and isinstance(r.json().get("passages"), list)
                    if not ok:
                        errors.append(f"/ask {r.status_code}: {r.text[:120]}")
                except httpx.HTTPError as e:
                    errors.append(f"/ask {type(e).__name__}")
                latencies.append((time.perf_counter() - t) * 1000)

        async def uploader():
            for k in range(uploads):
                doc = f"load-{k}"
                t = time.perf_counter()
                try:
                    r = await client.post("/documents", headers={"X-API-Key": KEY},
                                          files={"file": (doc + ".txt", UPLOAD.format(n=k + 1).encode("gb18030"))})
                    if r.status_code != 200:
                        errors.append(f"POST /documents {r.status_code}: {r.text[:120]}")
                    if k % 2:  # every other upload is taken out again
                        r = await client.delete(f"/documents/{doc}", headers={"X-API-Key": KEY})
                        if r.status_code != 200:
                            errors.append(f"DELETE /documents {r.status_code}: {r.text[:120]}")
                except httpx.HTTPError as e:
                    errors.append(f"/documents {type(e).__name__}")
                upload_ms.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.2)

        t0 = time.perf_counter()
        await asyncio.gather(uploader(), *[asker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
        docs = (await client.get("/documents")).json()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": round(wall, 1),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(latencies, 50), 1),
        "p95_ms": round(pct(latencies, 95), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "uploads": uploads,
        "upload_p50_ms": round(pct(upload_ms, 50), 1) if upload_ms else None,
        "documents_after": len(docs),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--uploads", type=int, default=10, help="documents uploaded during the run (every other one deleted again)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-growth", type=float, default=0.10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from qa.settings import Settings

    settings = Settings()
    from embeddings import Embedder
    from qa import index as index_mod

    index_mod.ensure(settings, Embedder(settings), progress=False)  # the index the copy starts from
    qs = questions()
    with tempfile.TemporaryDirectory(prefix="qa-load-") as tmp:
        data_dir = Path(tmp)
        shutil.copytree(settings.index_dir, data_dir / "index")
        shutil.copytree(settings.data_dir / "documents", data_dir / "documents", dirs_exist_ok=True) \
            if (settings.data_dir / "documents").is_dir() else None
        proc, base = start_server(data_dir, settings.models_dir)
        try:
            warm = asyncio.run(run(base, args.warmup, args.concurrency, 0, qs))
            rss_warm = rss_mb(proc.pid)
            result = asyncio.run(run(base, args.requests, args.concurrency, args.uploads, qs))
            rss_after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    growth = rss_after / rss_warm - 1
    result.update({"concurrency": args.concurrency, "warmup_errors": warm["errors"], "rss_after_warmup_mb": round(rss_warm),
                   "rss_after_run_mb": round(rss_after), "rss_growth": round(growth, 4)})
    ok = result["errors"] == 0 and warm["errors"] == 0 and growth <= args.max_growth
    result["ok"] = ok
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{result['requests']} /ask at concurrency {args.concurrency}, {args.uploads} uploads (half deleted again) meanwhile")
        print(f"  errors            {result['errors']}  {result['error_samples'] or ''}")
        print(f"  latency           p50 {result['p50_ms']} ms · p95 {result['p95_ms']} ms · p99 {result['p99_ms']} ms")
        print(f"  throughput        {result['rps']} requests/s over {result['wall_s']} s")
        print(f"  upload+delete     p50 {result['upload_p50_ms']} ms")
        print(f"  server RSS        {result['rss_after_warmup_mb']} MB after warm-up → {result['rss_after_run_mb']} MB after the run "
              f"({growth:+.1%}, limit +{args.max_growth:.0%})")
        print("  OK" if ok else "  FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

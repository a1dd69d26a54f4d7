"""Start-up with a scanned upload: `Service.load` in a new process with the scan's stored conversion
beside its original, then with that conversion deleted (OCR runs again, as before conversions were
stored). A 2-page scan made from a seed (tests/test_documents_formats.py's helpers), added with `qa add`
to a copy of the seeds' index; the model cache is shared. Prints seconds; asserts nothing.

    python bench/conversion.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

LOAD = ("import time; t = time.perf_counter(); from qa.service import Service; from qa.settings import Settings; "
        "s = Service.load(Settings()); print(round(time.perf_counter() - t, 2), len(s.sources))")


def main() -> int:
    import test_documents_formats as T

    from qa.settings import Settings

    base = Settings()
    with tempfile.TemporaryDirectory(prefix="qa-conversion-") as tmp:
        root = Path(tmp)
        shutil.copytree(base.index_dir, root / "data" / "index")  # the seeds' index: not embedded again
        scan = T._scan(T._typeset(T._pages(T._paras("001")), "2020年常州市武进区教育工作意见", "常州市武进区教育局"))
        (root / "scan.pdf").write_bytes(scan)
        env = dict(os.environ, QA_DATA_DIR=str(root / "data"), QA_MODEL_CACHE=str(base.models_dir))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(root / "scan.pdf")], env=env, capture_output=True,
                           text=True, cwd=REPO)
        if r.returncode != 0:
            print(f"qa add failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            return 1
        print(f"qa add of a 2-page scan (OCR at ingest): {time.perf_counter() - t:.1f} s")
        for label in ("with its stored conversion", "without it (OCR again)"):
            if label.startswith("without"):
                for p in (root / "data" / "documents").glob("*.converted.json"):
                    p.unlink()
            r = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, cwd=REPO)
            seconds = r.stdout.split()[0] if r.returncode == 0 and r.stdout.strip() else "failed"
            print(f"Service.load {label}: {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

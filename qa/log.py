"""What the service says while it works: the standard `logging` module, configured once.

Every start-up stage logs one line when it starts and one with its duration when it
ends; long stages with a known size also log percentages. On a terminal a stage with
a size shows a tqdm bar instead of the percentage lines; otherwise (a log file, a
container, a service manager) it is plain lines only. The stage running now and its
progress are kept here too, so `/healthz` can report them while the server loads.

Library code only calls `stage(...)` / `log`; nothing is printed unless `setup()` was
called (the CLI does), so tests and embedding applications stay quiet.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("qa")
START = time.monotonic()  # about when the process started (imported first by the CLI)
STEP = 0.1  # log a percentage line at every 10 %
ANNOUNCE_AFTER_S = 1.0  # a stage still running after this long says that it started

_configured = False
_lock = threading.Lock()
_now: dict = {}  # {"stage": str, "progress": float} of the stage running now


class _Formatter(logging.Formatter):
    """`INFO:     12:00:01 message`, aligned with uvicorn's own lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname + ':':9} {self.formatTime(record, '%H:%M:%S')} {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (not the one at set-up time),
    so a redirected or captured stderr gets the lines too."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup(level: int = logging.INFO) -> None:
    """Send the `qa` logger to stderr, once, and silence third-party bars and chatter."""
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    quiet_third_parties()


def configured() -> bool:
    return _configured


def quiet_third_parties() -> None:
    """No bars or warnings from libraries in our output: transformers' "Loading weights" /
    "Writing model shards" bars and its warnings, huggingface_hub's bars, jieba's
    "Building prefix dict" lines. Cheap: only touches modules already imported, and sets
    the environment switches the others read when they are imported later."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "jieba", "torch.onnx", "onnxruntime",
                 "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:
        quiet_transformers()


def quiet_transformers() -> None:
    """Call after importing transformers (it resets its own logger on import)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def status() -> dict:
    """The stage running now and its progress (0..1), for /healthz; {} when idle."""
    return dict(_now)


class stage:
    """One start-up step: `with stage("embedding 887 passages", total=887) as s: s.advance(16)`.

    Logs `<name>…` at the start, percentages on the way (at most one line per 10 %) when
    `total` is known, and `<name>: done in X s` (or `failed after X s`) at the end.
    `bar`: show a tqdm bar instead of percentage lines (default: stderr is a terminal and
    logging is set up)."""

    def __init__(self, name: str, total: int | None = None, unit: str = "", bar: bool | None = None,
                 heartbeat: float | None = None, label: str | None = None):
        self.name, self.total, self.unit = name, total, unit
        self.label = label or name  # what the percentage lines say (the full name was on the first line)
        self.heartbeat = heartbeat  # seconds between "still working" lines for a stage with no measurable progress
        self._stop = threading.Event()
        self.done = 0
        self._logged = 0.0
        show = _configured and sys.stderr.isatty() if bar is None else bar
        self._bar_wanted = bool(show and total)
        self._bar = None

    def __enter__(self) -> "stage":
        self.t0 = time.monotonic()
        _now.clear()
        _now.update({"stage": self.name, **({"progress": 0.0} if self.total else {})})
        # the start line only for a stage that takes a while: a quick one says "done in" once, and a
        # command that fails at once prints its one `qa: error:` line and nothing else
        self._announced = False
        self._timer = threading.Timer(ANNOUNCE_AFTER_S, self._announce)
        self._timer.daemon = True
        self._timer.start()
        if self._bar_wanted:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit=self.unit or "it", leave=False, file=sys.stderr)
        if self.heartbeat and not self.total:
            threading.Thread(target=self._beat, daemon=True).start()
        return self

    def _announce(self) -> None:
        with _lock:
            if self._announced or self._stop.is_set():
                return
            self._announced = True
        log.info("%s…", self.name)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            log.info("%s: still working, %.0f s so far", self.name, self.seconds)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.total:
            return
        frac = min(1.0, self.done / self.total)
        _now["progress"] = round(frac, 3)
        if self._bar is not None:
            self._bar.update(n)
        elif frac - self._logged >= STEP - 1e-9 and frac < 1.0:
            self._announce()
            self._logged = frac - frac % STEP
            log.info("%s: %d%% (%d/%d%s)", self.label, frac * 100, self.done, self.total, f" {self.unit}" if self.unit else "")

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0

    def __exit__(self, kind, exc, tb) -> None:
        self._stop.set()
        self._timer.cancel()
        if self._bar is not None:
            self._bar.close()
        if _now.get("stage") == self.name:
            _now.clear()
        if kind is None:
            log.info("%s: done in %.1f s", self.name, self.seconds)
        else:  # whoever handles the error says what it was (the CLI's one `qa: error:` line, /healthz)
            log.debug("%s: failed after %.1f s (%s)", self.name, self.seconds, getattr(kind, "__name__", kind))


class _NoHealthPolls(logging.Filter):
    """Drop uvicorn access-log lines for GET /healthz: a load balancer or a test polls it
    every half second, and hundreds of identical lines hid everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) >= 3 and str(args[2]).split("?")[0] == "/healthz")


def quiet_health_polls() -> None:
    logging.getLogger("uvicorn.access").addFilter(_NoHealthPolls())


def since_start() -> float:
    return time.monotonic() - START

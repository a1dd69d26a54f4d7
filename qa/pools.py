"""Thread pools made on first use, and made afresh in a forked child (a child has none of its
parent's threads: a pool inherited from it would wait forever on workers that do not exist)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_ALL: list["LazyPool"] = []


class LazyPool:
    def __init__(self, workers: int, prefix: str):
        self.workers, self.prefix = workers, prefix
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _ALL.append(self)

    def get(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.prefix)
                pool = self._pool
        return pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()


def _forget_all() -> None:
    for pool in _ALL:
        pool._forget()


os.register_at_fork(after_in_child=_forget_all)

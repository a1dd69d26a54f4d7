"""Plain-text tables that line up with Chinese text: columns are measured in display
cells (a CJK character takes two), not in characters. `wcwidth` does the measuring."""
from __future__ import annotations


def width(text: str) -> int:
    """Terminal cells `text` takes (CJK and fullwidth characters count 2)."""
    from wcwidth import wcswidth

    text = str(text)
    w = wcswidth(text)
    return w if w >= 0 else len(text)  # a control character: count characters rather than fail


def pad(text, cells: int, align: str = "<") -> str:
    """`text` padded with spaces to `cells` display cells: `<` left, `>` right, `^` centre.
    Text wider than `cells` is returned whole (a table never hides data)."""
    text = str(text)
    gap = max(0, cells - width(text))
    if align == ">":
        return " " * gap + text
    if align == "^":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def table(headers: list[str], rows: list[list], align: str | None = None, sep: str = "  ") -> list[str]:
    """Lines of a table, each column as wide as its widest cell. `align`: one of `<>^` per
    column (default: numbers right, text left, decided by the first row)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(width(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        first = rows[0] if rows else headers
        align = "".join(">" if isinstance(v, (int, float)) else "<" for v in first)
    out = []
    for r in cells:
        line = sep.join(pad(v, w, a) for v, w, a in zip(r, widths, align))
        out.append(line.rstrip())
    return out

"""Text from uploaded documents, made inert for chat frontends that render markdown or HTML.

A document may contain `[x](javascript:…)`, `<a href=…>` or `<script>`; the chat reply
quotes document text, and frontends render it. Markup is broken up visibly, never removed
(the quoted words stay as they were read): `](` gets a space, which in CommonMark is no
longer a link; `<` before a tag or autolink becomes the full-width `＜`. The `[n]`
citation markers are untouched."""
from __future__ import annotations

import re

_LINK = re.compile(r"\]\s*\(")  # [text](target) and ![alt](src)
_REF = re.compile(r"^(\s{0,3}\[[^\]]*\]):", re.M)  # [label]: target (a link reference definition)
_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # <a …>, </x>, <!-- …>, <?…>, <javascript:…> autolinks


def neutralise_markup(text: str) -> str:
    text = _LINK.sub("] (", text)
    text = _REF.sub(r"\1 :", text)
    return _TAG.sub("＜", text)

"""One router per resource; each handler maps HTTP onto one library call."""
from __future__ import annotations

from ..schemas import ErrorResponse

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 408, 422, 503)}
WRITE_ERRORS = {**ERRORS, **{code: {"model": ErrorResponse} for code in (413, 415, 429, 507)}}

"""Dependencies the routes share (FastAPI's `Annotated[…, Depends(…)]` aliases).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and
two thread hops per request (to read an attribute) cost more than the request's own handling
(0.1-0.5 ms each on a busy 2-core machine, see issue 14). None of them blocks: `State.need` is
attribute reads and, at most every RECHECK_S, one small file read."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .state import State


async def get_state(request: Request) -> State:
    return request.app.state.qa


async def get_settings(request: Request):
    return request.app.state.qa.settings


async def get_service(request: Request):
    return request.app.state.qa.need()


StateDep = Annotated[State, Depends(get_state)]
SettingsDep = Annotated[object, Depends(get_settings)]
ServiceDep = Annotated[object, Depends(get_service)]

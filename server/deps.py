"""Dependencies the routes share (FastAPI's `Annotated[…, Depends(…)]` aliases)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .state import State


def get_state(request: Request) -> State:
    return request.app.state.qa


def get_settings(request: Request):
    return request.app.state.qa.settings


def get_service(request: Request):
    return request.app.state.qa.need()


StateDep = Annotated[State, Depends(get_state)]
SettingsDep = Annotated[object, Depends(get_settings)]
ServiceDep = Annotated[object, Depends(get_service)]

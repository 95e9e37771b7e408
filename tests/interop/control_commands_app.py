"""The app of the aioqueue worker processes the control-command tests start (and of
their ``aioqueue control`` calls); its broker is ``AIOQUEUE_BROKER_URL``."""

from __future__ import annotations

from aioqueue import App

app = App("control-commands")


@app.task(name="ccx.add")
async def add(x: int, y: int) -> int:
    return x + y

"""A test hook: stop a command at a named point until the test releases it (or signals or kills it).

``STCL_HOLD="<point>=<fifo>"`` makes the command, on reaching ``<point>``, open the named pipe ``<fifo>``
for reading. That blocks until a writer opens it, so a test knows where the process stands when it sends
a signal or kills it, whatever the machine's speed: an event, not a wait of fixed length. Unset (always,
outside the tests) it costs one environment lookup.

Points: ``train.checkpoint.<iteration>`` (after that checkpoint is on disk, `stcl.train.loop`);
``infer.video_done.<video>`` (after that video's predictions are in place, `stcl.infer`).
"""

from __future__ import annotations

import os

__all__ = ["ENV", "hold"]

ENV = "STCL_HOLD"


def hold(point: str) -> None:
    """Block at ``point`` if ``STCL_HOLD`` names it, until a writer opens and closes its fifo."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, fifo = spec.partition("=")
    if name == point and fifo:
        with open(fifo, "rb") as pipe:
            pipe.read()

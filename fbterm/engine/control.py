"""The engine's side of the local control socket (``fbterm update``, ``status``, ``command``).

Requests arrive on the socket server's thread; every one that touches trading state is handed
to the engine thread (through ``call`` or ``submit``), never run where it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.commands import (
    CancelAll,
    Command,
    FlattenAll,
    Halt,
    KillSwitch,
    Rebalance,
    ReduceOnly,
    Resume,
)
from fbterm.engine.events import ActivityLog
from fbterm.engine.publisher import summary_dict
from fbterm.engine.strategies import StrategyHost
from fbterm.snapshot import EngineSnapshot

if TYPE_CHECKING:
    from fbterm.control import ControlServer
    from fbterm.ops.diagnostics import Diagnostics

# The commands the socket accepts by name: the ones that need no arguments.
SIMPLE_COMMANDS: dict[str, Callable[..., Command]] = {
    "halt": Halt,
    "reduce": ReduceOnly,
    "resume": Resume,
    "cancel_all": CancelAll,
    "flatten": FlattenAll,
    "kill": KillSwitch,
    "rebalance": Rebalance,
}


def serve_control(
    path: Path | str,
    *,
    diagnostics: Diagnostics | None,
    strategies: StrategyHost,
    call: Callable[..., Any],
    snapshot: Callable[[], EngineSnapshot],
    submit: Callable[[Command], int],
    activity: ActivityLog,
) -> ControlServer | None:
    """Serve the control socket at ``path``; None (and a warning) when it cannot be served.

    ``call(fn, timeout=...)`` runs ``fn`` on the engine thread, ``snapshot()`` takes one there.
    """
    from fbterm.control import ControlError, ControlServer
    from fbterm.ops.updates import UpdatesManagement

    updates = UpdatesManagement(diagnostics)

    def update(req: dict[str, Any]) -> Any:
        return call(lambda: updates.handle_request(strategies, req), timeout=60)

    def status(req: dict[str, Any]) -> Any:
        return summary_dict(snapshot())

    def command(req: dict[str, Any]) -> Any:
        name = str(req.get("name", ""))
        if name not in SIMPLE_COMMANDS:
            raise ValueError(f"unknown command {name!r} (known: {', '.join(SIMPLE_COMMANDS)})")
        return {"command_id": submit(SIMPLE_COMMANDS[name](source="control"))}

    server = ControlServer(path, {"update": update, "status": status, "command": command})
    try:
        server.start()
    except (ControlError, OSError) as e:
        activity.log("warning", "engine", f"control socket not served: {e}")
        return None
    return server

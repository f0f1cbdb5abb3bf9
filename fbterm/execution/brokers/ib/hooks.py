"""Listening to ib_async one level below its events, where its events fall short.

ib_async hands on a commission report only once the execution's openOrder (with its perm
id) has arrived, and a live execution only of an order it already knows; a completed order
loses IB's words for why it ended. IB sends these in no promised order, so the adapter hooks
the wrapper callbacks themselves: nothing IB says is dropped on the way.
"""

from __future__ import annotations

from collections.abc import Callable

from ib_async import IB
from ib_async import Contract as IBContract
from ib_async import Fill as IBFill
from ib_async.objects import CommissionReport as IBCommissionReport
from ib_async.objects import Execution as IBExecution
from ib_async.order import Order as IBOrder
from ib_async.order import OrderState as IBOrderState


def listen_below(
    ib: IB,
    on_live_fill: Callable[[IBFill], None],
    on_commission: Callable[[str, float], None],
    completed_why: dict[int, str],
) -> None:
    """After ib_async has handled each message: every live execution to ``on_live_fill``,
    every commission report to ``on_commission(exec id, commission)``, and each completed
    order's status text into ``completed_why`` (by perm id)."""
    w = ib.wrapper
    exec_details, commission_report, completed_order = (
        w.execDetails,
        w.commissionReport,
        w.completedOrder,
    )

    def on_exec(req_id: int, contract: IBContract, execution: IBExecution) -> None:
        exec_details(req_id, contract, execution)
        if req_id == -1:  # live; a reqExecutions answer carries its request id
            stored = w.fills.get(execution.execId)
            if stored is not None:
                on_live_fill(stored)

    def on_report(report: IBCommissionReport) -> None:
        commission_report(report)
        on_commission(report.execId, float(report.commission))

    def on_completed(contract: IBContract, order: IBOrder, state: IBOrderState) -> None:
        completed_order(contract, order, state)
        if state.completedStatus:
            completed_why[order.permId] = state.completedStatus

    w.execDetails = on_exec  # type: ignore[method-assign,assignment]  # the hook described above
    w.commissionReport = on_report  # type: ignore[method-assign,assignment]
    w.completedOrder = on_completed  # type: ignore[method-assign,assignment]

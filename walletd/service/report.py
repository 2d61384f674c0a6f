"""A client's own spend report, for GetSpendReport (scope read).

The operator's ``walletd spend-report`` reads the database directly; a client
asks the daemon, which runs the same queries on its read engine, always
restricted to the caller (whatever the request says) and without the audit
walk, which reads the whole ledger and is the operator's job.
"""

from __future__ import annotations

from dataclasses import replace

from walletd.db import queries
from walletd.db.ledger import Store
from walletd.domain.payment import Caller
from walletd.domain.report import DIMENSIONS, ReportQuery, SpendReport, check_group_by


def client_report(store: Store, caller: Caller, query: ReportQuery, now_ms: int) -> SpendReport:
    """The caller's report: ``query`` with its client forced to the caller.

    Raises:
        InvalidRequestError: an unknown group-by dimension.
        StorageError: the ledger cannot be read.
    """
    own = replace(
        query, client=caller.name, group_by=check_group_by(query.group_by, allowed=DIMENSIONS)
    )
    with store.connection() as conn:
        return queries.spend_report(conn, own, now_ms)

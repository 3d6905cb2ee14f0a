"""How often the server goes to PostgreSQL: `realtime_db_queries_total`, by kind.

`statement` counts one-statement calls (a booking, a snapshot, a resume, an existence check);
`loan` counts connections lent for several statements or a transaction (the event drains, also
those on the LISTEN connection, the event reader, webhook bookkeeping). Kept as plain numbers
and turned into the metric at scrape time: every booking counts one, and a Prometheus counter's
lock would cost more.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, Metric


class Queries:
    statements = 0
    loans = 0

    @classmethod
    def total(cls) -> int:
        return cls.statements + cls.loans


class _Collector:
    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("realtime_db_queries", "Calls to PostgreSQL: one-statement "
                                     "calls and connection loans (an event drain is one)",
                                     labels=["kind"])
        family.add_metric(["statement"], Queries.statements)
        family.add_metric(["loan"], Queries.loans)
        yield family


REGISTRY.register(_Collector())

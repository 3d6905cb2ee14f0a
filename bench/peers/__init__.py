"""The servers a Python team would otherwise write, serving the load tester's workload.

Both speak enough of the contract's HTTP routes for `realtime loadtest` to set up and book, and
book through real PostgreSQL with a conditional UPDATE, so that only the fan-out differs.
"""

"""What the benchmarks in bench/ share, one concern a module.

Shared: cpu (CPU and memory accounting from /proc), net (ports, the loopback-only rule), pg
(scratch databases), server (a `realtime serve` process), stats (percentiles), machine (the
machine's facts). bench/booking.py's parts: load (its driver and generator processes), drive
(the measured window), pipeline (the server's event pipeline beside direct calls), results (a
phase's figures, the run's summary), profile (py-spy samples summarised), report and
report_sections (the table, docs/benchmarks-booking.md). bench/fanout.py's: subscribers,
floor, fanout_doc. bench/compare.py's: peers_report. HTTP goes through realtime.httpclient.
"""

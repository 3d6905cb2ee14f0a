"""`python -m realtime.loadtest ...`: the load tester without the rest of the CLI."""

from __future__ import annotations

import argparse

from . import add_arguments, run

parser = argparse.ArgumentParser(prog="realtime loadtest")
add_arguments(parser)
raise SystemExit(run(parser.parse_args()))

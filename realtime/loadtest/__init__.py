"""`realtime loadtest`: many subscribers, a booking stream, and a check of every delivery.

The CLI calls `add_arguments(sub_parser)` and `run(args)`; `python -m realtime.loadtest`
runs it standalone. How it works and what one client process sustains: docs/loadtest.md.
"""

from __future__ import annotations

from .options import add_arguments
from .runner import run

__all__ = ["add_arguments", "run"]

"""Cursors: opaque strings naming a position in the event log of one database.

Format `<pos>@<epoch>`. The epoch is drawn when the database's event log is created, so a
cursor from another database (or one recreated since) is recognised and answered with a
snapshot instead of a wrong resume.
"""

from __future__ import annotations

from realtime.errors import ValidationError


def encode(pos: int, epoch: str) -> str:
    return f"{pos}@{epoch}"


def decode(text: object, field: str = "since") -> tuple[int, str]:
    if not isinstance(text, str) or len(text) > 64:
        raise ValidationError(field, "must be a cursor string received from this server")
    pos_text, sep, epoch = text.partition("@")
    if not sep or not pos_text.isdigit() or not epoch.isalnum():
        raise ValidationError(field, "must be a cursor string received from this server")
    return int(pos_text), epoch

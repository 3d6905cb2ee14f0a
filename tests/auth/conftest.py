"""The seeded vendor, services and slots of the channels tests, for the auth tests too."""

from tests.channels.conftest import world

__all__ = ["world"]

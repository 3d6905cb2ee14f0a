"""Webhooks: a backend learns of every change without holding a socket.

Each endpoint follows the event log with a cursor of its own in PostgreSQL, so an event is
delivered if and only if its change committed, in log order, at least once, across restarts
of the server or the receiver.
"""

"""The one schema: every HTTP body and query parameter and every WebSocket message, declared
once as msgspec Structs with their limits.

types.py holds the constrained field types (ids, times, names, quantities...), objects.py the
objects both doors serve (slot, booking, hold, error), http.py and ws.py the messages of each
door, decode.py the decoding and the project's own error messages, openapi.py and asyncapi.py
the documents generated from all of them.
"""

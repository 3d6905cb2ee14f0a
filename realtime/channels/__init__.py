"""Channels: live availability for subscribers of vendor and service channels, over WebSocket
(/ws) and Server-Sent Events (/sse)."""

"""WebSocket channels: live availability for subscribers of vendor and service channels."""

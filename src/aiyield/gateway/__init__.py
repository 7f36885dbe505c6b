"""The ingest gateway: HTTP endpoints and the pure adapters that turn third-party payloads into events."""

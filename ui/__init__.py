"""Chat web UI served by the API."""

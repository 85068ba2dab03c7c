"""Talking to the API: the HTTP client, the two sources (feed, documented), cursors, body parsing."""

"""Hospital-side feeds: signed HTTP events from a hospital's systems (results ready, and the
queue events of waiting-room recall in :mod:`callcenter.recall.queue`).

The web layer (``agents_console.feeds``) checks sizes and passes the raw request on;
:mod:`callcenter.feeds.service` checks the signature, validates, stores and notifies.
"""

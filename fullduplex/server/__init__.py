"""Serving agents: ``fullduplex serve`` (WebSocket on Moshi's protocol + the web client in ``static/``),
the protocol client the bench and tests use, and ``fullduplex talk`` (local microphone and speakers).

- ``protocol.py``: message kinds and framing; ``ogg.py``: checking the client's Ogg/Opus stream;
- ``session.py``: one connection = one session (own agent, clock, codec state, bounded queues, a thread);
- ``app.py``: aiohttp routes, access control, capacity, graceful shutdown; ``config.py``: every bound;
- ``record.py``: recordings written as they happen; ``client.py``: a Python client of the protocol;
- ``talk.py``: PortAudio.
"""

"""Serving agents: ``fullduplex serve`` (WebSocket on Moshi's protocol + the web client in ``static/``)
and the protocol client the bench and tests use. (``fullduplex talk`` lives in ``runtime/talk.py``.)

- ``protocol.py``: message kinds and framing; ``ogg.py``: the Ogg/Opus stream both ways (checked, decoded,
  encoded; libopus in ``audio/opus.py``);
- ``session.py``: one connection = one session (a conversation on the shared agent, its clock, codec state,
  bounded queues, a thread running ``runtime.drive``);
- ``app.py``: aiohttp routes, capacity, graceful shutdown, ``serve``; ``access.py``: token, Origin and Host checks;
- ``connection.py``: one WebSocket's life and the state connections share; ``config.py``: every bound;
- ``capacity.py``: how many sessions fit, derived from the measured CPU cost of a conversation (busy beyond);
- ``loop_lag.py``: how late the event loop runs (every call's audio is written by it), in ``/api/status``;
- ``ray_serve.py``: ``serve --ray``, the same connections as Ray Serve replicas (``ray_guard.py``: the proxy's guard);
- ``testserver.py``: the server on an ephemeral port in a thread (tests, benchmarks);
- ``client.py``: a Python client of the protocol (recordings are written by ``audio/live_recording.py``).
"""

"""Driving a conversation on the clock: ``drive`` (the one frame loop) from a file (``runner``,
``simulate``) or a microphone (``talk``); ``latency`` reads a timeline's per-turn breakdown."""

"""The conversation's time base, below everything else: how many samples make one second.

Sample ``n`` of either stream (the user's or the agent's) is at ``n / SAMPLE_RATE`` seconds on the
conversation clock. ``events.py`` stamps events with it; ``audio/frames.py`` re-exports it as the
rate of every frame inside the engine.
"""

SAMPLE_RATE = 16_000

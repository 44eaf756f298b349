"""Audio plumbing: frames and the conversation clock, WAV I/O, resampling, the recorder."""

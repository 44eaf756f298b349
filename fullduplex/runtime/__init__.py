"""Driving an agent from a source (a file now; a socket or a microphone later) on the clock."""

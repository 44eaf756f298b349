"""fullduplex: voice agents that listen while they speak.

Every agent is driven the same way: one frame of user audio in, one frame of agent audio out,
on one conversation clock (see ``engines/base.py``).
"""

__version__ = "0.1.0"

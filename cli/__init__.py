"""kvheal: is a poll-and-heal cache on a last-write-wins KV store really self-healing?"""

__version__ = "0.1.0"

"""The bottom layer: events and their limits, drop reasons, and the ledger that counts them.

Nothing here starts a thread, reads the network or imports another layer of the package.
"""

__all__: list[str] = []

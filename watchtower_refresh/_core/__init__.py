"""The bottom layer: events and their limits, drop reasons, the ledger that counts them, and
what each stream lost (drop markers).

Nothing here starts a thread, reads the network or imports another layer of the package.
"""

__all__: list[str] = []

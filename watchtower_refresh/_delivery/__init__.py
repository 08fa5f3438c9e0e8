"""The delivery layer: what becomes of a record once the handler has made it an event.

``pipeline`` admits what the fast path cannot and builds the rest; ``generations`` owns a
handler's lifecycle and its sender generations; ``closing`` is ``close()`` on deadlines;
``synchronous`` sends from the caller's thread; ``scheduler`` is one generation's threads;
``outcome`` delivers one batch and settles it; ``deliver`` is the put-and-retry loop of one
batch; ``backlog`` is the pipeline's side of the disk spool.
"""

__all__: list[str] = []

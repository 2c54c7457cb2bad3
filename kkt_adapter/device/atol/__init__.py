"""ATOL cash registers through the ATOL driver v10's JSON tasks.

``mapping`` turns our FFD documents and device requests into the driver's JSON tasks and its
answers into our results and errors; it is pure (no I/O), so the transports (the driver's web
server, the driver library) and the ATOL emulator share it. What each field rests on, and what
could not be confirmed from public sources, is in ``docs/atol.md``.
"""

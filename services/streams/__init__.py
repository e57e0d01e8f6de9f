"""The bridge between Kubernetes streams and the event loop of the socket consumers.

A followed pod log is read on the event loop itself (`LogReader`, a task), with aiohttp: the
loop waits on its socket like on any other, and a server following hundreds of logs runs no
thread for them. An exec session (the terminal) is read by threads of its own (`ExecBridge`),
because the official client's websocket for it is blocking; never by the one shared thread of
`sync_to_async`, where a session open for hours would stall every database call of the process.

Both hand what they read to the consumer through a `Pipe`, whose capacity is bounded: when the
consumer stops taking items (its browser is behind on acknowledgements) the reader waits, stops
reading the socket to the cluster, and TCP pushes back to the cluster — memory stays bounded
and nothing is lost.

Closing is always from the loop side: `Pipe.close()` wakes a waiting writer, a log reader is
cancelled and closes its stream, an exec session's threads are woken and `join_threads` waits
for them to be gone.
"""


# The modules of the package, by topic (import from them, not from the package):
#   pods.py         a service's pods, their revision, the marker lines between two pods' logs
#   timestamps.py   the RFC 3339 timestamps that start each log line
#   escaping.py     log bytes into sanitised lines and JSON strings (`LineSplitter`)
#   pipe.py         the thread↔loop pipe with bounded room, and `join_threads`
#   log_reader.py   `LogReader`: a followed pod log, on the event loop
#   exec_bridge.py  `ExecBridge`: the terminal's shell, read and written by threads
# Who may open a terminal is an access check: `services/access.py:may_open_terminal`.

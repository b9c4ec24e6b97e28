"""Record an agent's API exchanges once, replay them offline: ``--record`` and ``--replay``.

Owns the local proxy the agent talks to (``proxy``: a threaded HTTP server on
127.0.0.1, one per pytest process, routing each request to its step by the
base URL's path), the tapes of step executions (``tape``: recording forwards
and keeps, replaying answers from the cassette), the set of tapes and the
proxy's life (``deck``), the cassette file and its checks (``store``, with
``sse`` for streamed replies), and what a replayed request must match
(``match``: normalising paths, task ids and times, and naming the first
difference). Imports only ``errors``; never pytest. The pytest face
(``recording.py``) opens a tape per step and hands its environment to the
step (``StepContext.env``); the agent backends only read ANTHROPIC_BASE_URL.
"""

"""lastactive: who is using a session, and how long has it been idle, on OpenTelemetry.

One import package, three parts:

* :mod:`lastactive.instrumentation`: report a session's activity as OTel spans, events and
  metrics (library and the ``run``, ``proxy``, ``host``, ``lease``, ``hook``, ``tmux`` commands);
* :mod:`lastactive.collector`: ``lastactive serve``, OTLP in, last-activity state, idle policy
  and transitions out;
* neutral modules both depend on: :mod:`lastactive.conventions` (every name we define),
  :mod:`lastactive.client` (how a command finds and talks to the collector) and
  :mod:`lastactive.cli` (the ``lastactive`` command, which only parses and delegates).

Importing this package loads nothing else, so hooks start fast.
"""

__version__ = "0.1.0"

"""The run runtime: the current run and call (``context``), the run as rules see it (``run``),
the recorded nondeterminism (``effects``) and the interface of a replay (``playback``).

Imports run one way: ``context`` <- ``run`` <- ``effects``; ``playback`` names the
replay's side only in types, so ``proctor.runs.replay`` depends on this package
and never the reverse.
"""

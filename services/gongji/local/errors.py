"""What goes wrong in the one-machine tools: one root, `LocalError`, so a caller stops on any of them."""

from __future__ import annotations


class LocalError(RuntimeError):
    """A one-machine tool (the stack, the demo, the bench) cannot go on."""


class StackError(LocalError):
    """A local server is missing, did not come up, or could not be stopped."""


class DemoError(LocalError):
    """The demo cannot go on: a child process died, or the service never took the registry."""

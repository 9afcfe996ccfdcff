"""The library's exceptions. Only cli.py maps them to exit codes."""

from __future__ import annotations


class HamustroError(Exception):
    """Base of everything the library raises on purpose."""


class ConfigError(HamustroError):
    """A config value is missing, unknown or malformed; the message names the key and its source."""


class InputError(HamustroError):
    """An event or option given on the command line or on stdin is invalid."""


class SpoolError(HamustroError):
    """The spool directory or database cannot be used. Nothing in it was changed."""


class DependencyError(HamustroError):
    """An installed library hamustro needs (protobuf) is missing, too old or broken."""

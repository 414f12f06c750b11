"""Typed exceptions. Library code raises these; the CLI turns them into one line and an exit code."""


class EdgeVLMError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 2


class ConfigError(EdgeVLMError, ValueError):
    """A configuration value or option is invalid."""


class DataError(EdgeVLMError, ValueError):
    """A data file or record is malformed (message names file and line/row)."""


class BackboneError(EdgeVLMError):
    """A backbone is missing, unsupported, or does not match an adapter."""


class TaskError(EdgeVLMError, KeyError):
    """An unknown task or a task-name clash."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BundleError(EdgeVLMError):
    """A bundle is malformed, tampered with, or of an unknown schema."""


class ExportError(EdgeVLMError):
    """Export failed validation (numerics, graph/adapter agreement)."""


class DistributedError(EdgeVLMError):
    """A distributed job lost a process or could not form (the message names the rank and what failed)."""

    exit_code = 3

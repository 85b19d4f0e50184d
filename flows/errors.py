"""Errors raised by `autolabel.flows` and the command line."""


class FlowError(Exception):
    """Root of every error raised by `autolabel.flows`."""


class ConfigError(FlowError, ValueError):
    """A setting that cannot be used: the message names the variable, value and what is accepted."""

"""Thin CLI wrappers: one module per `stcl` subcommand (see stcl.cli.COMMANDS)."""

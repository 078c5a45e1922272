"""Subcommands of the ``jaxrnn`` command, one module each (see ``jaxrnn.cli``)."""

"""CLI subcommands: each module defines ``register(subparsers)``; heavy imports stay inside its handler."""

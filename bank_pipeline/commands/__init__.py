"""`bank-pipeline` subcommands: each module here exposes `register(subparsers)`.

`register` adds one or more subparsers and sets `func=<callable(args) -> int>` on each.
Modules are discovered, so adding a command never means editing a shared file.
"""

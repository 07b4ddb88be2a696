"""The `ums-find` command (cli.py): the entry point that builds the settings and clients and runs a role."""

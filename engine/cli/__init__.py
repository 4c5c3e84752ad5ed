"""The command line: thin commands over the `Engine` facade."""

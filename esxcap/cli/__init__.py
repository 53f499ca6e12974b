"""The command line: the entry point and command table, one module per command group, shared options,
exit codes and the output module (the only user of rich). Nothing outside this package imports it."""

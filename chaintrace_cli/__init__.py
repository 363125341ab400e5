"""The ``chaintrace`` command line: one entry point, a sub-command group per component."""

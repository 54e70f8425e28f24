"""The command line: thin wrappers over the client and the runtimes."""

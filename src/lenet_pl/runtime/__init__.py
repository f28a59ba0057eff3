"""The run plumbing a first read can skip: how a command is parsed, helped and ended (`cli`)."""

"""The plumbing a first read can skip: composing, checking and naming configs, building a run, checkpoints,
outputs, errors, a trained run loaded back, image files, and the command-line harness (`cli`)."""

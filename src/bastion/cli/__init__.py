"""The ``bastion`` command line: thin commands that parse, call one capability function and render."""

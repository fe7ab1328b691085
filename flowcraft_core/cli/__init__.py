"""The ``flowcraft`` command line. Scripts depend on its contract: see each command's help."""

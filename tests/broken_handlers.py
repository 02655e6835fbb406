"""A handler module that cannot import, as after a bad deploy."""

raise ImportError("this module is broken on purpose")

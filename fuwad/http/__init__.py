"""The HTTP side of fuwad: the REST API and the admin page."""

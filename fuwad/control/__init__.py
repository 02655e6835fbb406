"""The control socket: how fuwactl and the HTTP API steer the daemon."""

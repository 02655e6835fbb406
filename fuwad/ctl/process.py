"""fuwactl process commands (filled in by their issue)."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    """Add this module's subcommands to commands."""
    del commands
    _ = argparse

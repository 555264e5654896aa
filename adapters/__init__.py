"""movecar's adapters: everything that does I/O, and the composition root.

Installed and imported as ``movecar_adapters`` (the source folder is ``adapters/``), so a
host's own ``adapters`` package never clashes with it. Start with :func:`connect`, which
builds the engine with every part it needs from one configuration.
"""

from __future__ import annotations

from movecar_adapters.config import ConfigError, Settings, load_settings, mask_url
from movecar_adapters.connect import connect

__all__ = ["ConfigError", "Settings", "connect", "load_settings", "mask_url"]

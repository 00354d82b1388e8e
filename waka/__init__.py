"""waka: a self-hosted, Heroku-style platform.

The code lives in the repository's top-level folders, installed as subpackages:
``proto/waka/v1`` is ``waka.v1`` (the gRPC contract), ``controller/`` is ``waka.controller``,
``agent/`` is ``waka.agent``, ``cli/`` is ``waka.cli`` and ``buildpacks/`` is ``waka.buildpacks``.
"""

__version__ = "0.1.0"

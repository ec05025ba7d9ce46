"""``python -m compactor``: the same as the ``compactor`` command."""

import sys

from .cli import main

sys.exit(main())

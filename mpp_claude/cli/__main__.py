"""``python -m mpp_claude.cli``: the same as the ``mpp-claude`` command."""

import sys

from . import main

sys.exit(main())

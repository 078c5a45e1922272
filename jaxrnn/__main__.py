"""``python -m jaxrnn`` is the ``jaxrnn`` command."""

import sys

from jaxrnn.cli import main

sys.exit(main())

"""Old name of modules.infotext_utils (A1111 renamed it in 1.7); extensions still import it.

This module *is* infotext_utils: the same functions and the same paste registry.
"""

import sys

from modules import infotext_utils

sys.modules[__name__] = infotext_utils

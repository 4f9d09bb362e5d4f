"""Old name of modules.sd_samplers_timesteps (DDIM, PLMS, UniPC); extensions still import it.

This module *is* sd_samplers_timesteps.
"""

import sys

from modules import sd_samplers_timesteps

sys.modules[__name__] = sd_samplers_timesteps

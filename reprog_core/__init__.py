"""reprog_core: model reprogramming and its neural tangent kernel, as a library.

f_T(x) = b(f_S(a_theta(x))): a frozen source model f_S, a trainable input transformation a_theta,
a label mapping b. See docs/architecture.md for the module map.
"""

import os as _os
import sys as _sys

# OpenMP threads that wait for work sleep instead of spinning. With spinning (the default), two
# torch threads sharing their cores with other processes ran a fit 5.8x slower than one thread
# (README "Measured", thread policy). OpenMP reads this once, when torch loads its runtime, so it
# is set here, before anything in the package imports torch; an explicit setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Whether torch was loaded before this package (then the setting above came too late for it).
TORCH_PRELOADED = "torch" in _sys.modules

__version__ = "0.1.0"

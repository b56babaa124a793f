"""reprog_core: model reprogramming and its neural tangent kernel, as a library.

f_T(x) = b(f_S(a_theta(x))): a frozen source model f_S, a trainable input transformation a_theta,
a label mapping b. See docs/architecture.md for the module map.
"""

__version__ = "0.1.0"

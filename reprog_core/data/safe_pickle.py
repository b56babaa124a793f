"""Read the pickles that data sets ship in without letting them run code.

CIFAR-10/100's "python version" and animal-mnist's bundled arrays are pickles. A plain
``pickle.load`` calls whatever callable the file names (``os.system`` included), so a data root or
package file written by someone else could run code in the server. ``restricted_load`` admits only
what those formats are made of:

* the pickle built-ins: dict, list, tuple, str, bytes, int, float, bool, None;
* numpy arrays, numpy scalars and dtypes, as numpy's own ``__reduce__`` rebuilds them
  (``numpy._core.multiarray._reconstruct`` / ``scalar``, ``numpy._core.numeric._frombuffer``,
  ``numpy.ndarray``, ``numpy.dtype``; also under the ``numpy.core`` names older numpy wrote);
* ``_codecs.encode``, which protocol-2 pickles written by Python 3 use to rebuild ``bytes``.

Any other global (a class, a function, a module attribute) is refused with ``UnsafePickleError``
before it is looked up, so nothing the file names is imported or called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
from typing import Any, BinaryIO

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names something other than the plain data a data-set file holds."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Taken from numpy's own reducers, so the objects are right for the installed numpy version.
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.int64(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for pkg in ("numpy.core", "numpy._core"):
        out[(f"{pkg}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{pkg}.multiarray", "scalar")] = scalar
        out[(f"{pkg}.numeric", "_frombuffer")] = frombuffer
    return out


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_numpy_globals(),
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` answers only from ``ALLOWED_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles name modules by their old names (copy_reg, __builtin__): map them the
        # way pickle itself does, then look the pair up; nothing is ever imported.
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:
            key = _compat_pickle.NAME_MAPPING[key]
        elif module in _compat_pickle.IMPORT_MAPPING:
            key = (_compat_pickle.IMPORT_MAPPING[module], name)
        if key in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[key]
        raise UnsafePickleError(
            f"refused to load '{key[0]}.{key[1]}' from a pickle: data-set pickles may hold only "
            "dicts, lists, strings, bytes, numbers and numpy arrays, so this file is not a genuine "
            "data file (it could run code when loaded)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a pickle with persistent ids: not a data-set file")


def restricted_load(f: BinaryIO, *, encoding: str = "ASCII") -> Any:
    """``pickle.load(f)`` for untrusted data files: only plain data and numpy arrays come back.

    ``encoding``: as for ``pickle.load`` ('latin1' for Python 2 pickles with numpy arrays).
    Raises ``UnsafePickleError`` (a ``pickle.UnpicklingError``) for anything else.
    """
    return RestrictedUnpickler(f, encoding=encoding).load()


def restricted_loads(data: bytes, *, encoding: str = "ASCII") -> Any:
    """``restricted_load`` of an in-memory pickle."""
    return restricted_load(io.BytesIO(data), encoding=encoding)

import os

# Before torch loads (reprog_core/__init__.py sets the same; see runtime.pin_threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reprog_core.cli import main  # noqa: E402

raise SystemExit(main())

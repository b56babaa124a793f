from reprog_core.cli import main

raise SystemExit(main())

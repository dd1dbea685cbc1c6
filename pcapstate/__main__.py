from pcapstate.cli import main

raise SystemExit(main())

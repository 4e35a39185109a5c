from stcl.cli import main

raise SystemExit(main())

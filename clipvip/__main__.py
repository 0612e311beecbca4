from clipvip.cli import main

raise SystemExit(main())

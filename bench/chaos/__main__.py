"""`python -m bench.chaos`: run the chaos harness (options: `--help`)."""

from bench.chaos import main

raise SystemExit(main())

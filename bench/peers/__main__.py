"""`python -m bench.peers`: run the peer benchmark (options: `--help`)."""

from bench.peers import main

raise SystemExit(main())

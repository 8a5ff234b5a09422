"""`python -m lanfer.cli ...`, the same as `python -m lanfer ...` and the `lanfer` command."""
from . import main

raise SystemExit(main())

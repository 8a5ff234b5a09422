"""`python -m lanfer ...` is the `lanfer` command (and what torchrun launches: `torchrun -m lanfer train ...`)."""
from .cli import main

raise SystemExit(main())

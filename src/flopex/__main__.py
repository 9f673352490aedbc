from __future__ import annotations

from flopex.cli import main

main()

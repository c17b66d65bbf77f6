"""``python -m ketamon`` behaves the same as the ``ketamon`` command."""

from __future__ import annotations

import sys

from ketamon.cli import main as _main


def main() -> None:
    sys.exit(_main())


if __name__ == "__main__":
    main()

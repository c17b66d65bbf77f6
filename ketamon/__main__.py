"""``python -m ketamon`` behaves the same as the ``ketamon`` command."""

from __future__ import annotations

import sys


def main() -> None:
    try:  # Ctrl+C while the program is still loading: no traceback (exit 130)
        from ketamon.cli import main as _main
    except KeyboardInterrupt:
        sys.stderr.write("ketamon: interrupted (SIGINT)\n")
        sys.exit(130)
    sys.exit(_main())


if __name__ == "__main__":
    main()

"""The script PyInstaller freezes: the same program as ``python -m taskmill``."""

from taskmill.cli import main

if __name__ == "__main__":
    main()

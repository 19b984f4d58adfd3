"""``python -m facekit``."""

from facekit.cli import main

if __name__ == "__main__":
    main()

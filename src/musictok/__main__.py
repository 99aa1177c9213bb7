"""``python -m musictok …``: the CLI as a module, which is how ``torchrun -m musictok train …`` launches it."""

from .cli import main

if __name__ == "__main__":
    main()

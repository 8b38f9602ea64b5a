"""`python -m nerf COMMAND ...`: the console commands without installed scripts."""
import sys

from nerf.commands import COMMANDS

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m nerf {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))

"""Moved to `aiyield.plugins.hooks`. Kept because git hooks installed by earlier versions run
`python -m aiyield.hooks post-commit`."""

from aiyield.plugins.hooks import hook_app

if __name__ == "__main__":
    hook_app(prog_name="aiyield hook")

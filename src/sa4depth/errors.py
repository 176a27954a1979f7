"""The one exception type for problems with user input (files, configs, checkpoints).

The CLI prints it as a single line (``error: <path>: <problem>``) instead of a traceback.
"""

from collections.abc import Callable


class InputError(Exception):
    """Bad user input: the message names the file (or config key) and the problem."""

    def __init__(self, path, problem: str | None = None):
        if problem is None:  # re-raised from a DataLoader worker: the traceback's last line is the original
            path, problem = "", str(path).rstrip().splitlines()[-1].split("InputError: ", 1)[-1]
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def run_script(main: Callable[[], object]) -> None:
    """Run a script's ``main``: an `InputError` ends it with the one line ``error: <path>: <problem>``.

    For the scripts in ``benchmarks/`` (the CLI has its own handler); the exit status is 1.
    """
    try:
        main()
    except InputError as e:
        raise SystemExit(f"error: {e}") from None

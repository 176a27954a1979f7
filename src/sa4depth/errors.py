"""The one exception type for problems with user input (files, configs, checkpoints).

The CLI prints it as a single line (``error: <path>: <problem>``) instead of a traceback.
"""


class InputError(Exception):
    """Bad user input: the message names the file (or config key) and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

"""The exit codes of every `stcl` command (documented in README.md, "Exit codes").

0 done; 1 user error (one line naming the file, key or path); 69 unavailable (EX_UNAVAILABLE of sysexits.h:
what the command waits for never came, e.g. the other processes of a multi-node training, or, for the
Snakefile (`stcl.runlock`), a `dvc repro` holds the repository: one line naming it); 75 preempted by
SIGTERM/SIGUSR1 (EX_TEMPFAIL of sysexits.h: run the same command again to continue); 130 interrupted by
Ctrl-C (128 + SIGINT, as shells report it; run the same command again to continue).
Argparse usage errors exit 2.
"""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_USER_ERROR", "EXIT_UNAVAILABLE", "EXIT_PREEMPTED", "EXIT_INTERRUPTED", "UnavailableError"]

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_UNAVAILABLE = 69
EXIT_PREEMPTED = 75
EXIT_INTERRUPTED = 130


class UnavailableError(RuntimeError):
    """What the command waited for never came (its message is the one line `stcl` prints; exit 69)."""

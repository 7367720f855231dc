"""Exit codes scripts can rely on (documented in ``mpp_claude.cli``)."""

EXIT_OK = 0           # success
EXIT_ERROR = 1        # a library, network or configuration error (one line on stderr)
EXIT_USAGE = 2        # bad command line (argparse)
EXIT_DECLINED = 3     # payment declined by policy or budget: nothing was paid
EXIT_INTERRUPTED = 130  # Ctrl-C

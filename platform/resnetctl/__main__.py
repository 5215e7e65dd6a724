"""`python -m resnetctl` runs the command line."""

import sys

try:
    from resnetctl.cli.app import main
except ModuleNotFoundError as missing:
    # A Python without resnetctl's dependencies (a Ray head started outside the venv runs jobs
    # with the system's `python`): one line saying what to do, not a traceback.
    if (missing.name or "").split(".")[0] == "resnetctl":
        raise
    sys.exit(
        f"resnetctl: error: this Python ({sys.executable}) has no module named "
        f"'{missing.name}', which resnetctl needs: run resnetctl from the venv it is installed "
        "in (`. .venv/bin/activate`), or pip install resnetctl into this Python; a Ray cluster "
        "runs jobs with the `python` on its head node's PATH, so start the head from that venv"
    )

if __name__ == "__main__":
    main()

"""`python -m resnetctl` runs the command line."""

from resnetctl.cli.app import main

if __name__ == "__main__":
    main()

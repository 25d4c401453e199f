"""``python -m epic_wfms.wfms.idds.localserver prepare``: build the iDDS venv (cached)."""

import sys

from epic_wfms.wfms.idds.localserver.venv import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

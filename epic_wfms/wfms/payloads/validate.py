"""Validation stand-in: is an STF fit for processing? The verdict reported to PanDA.

Run as ``python -m epic_wfms.wfms.payloads.validate --input STF --output OUT.json``. An STF
is validated when it decodes in our format (``EPICSTF1``) and holds hits; another format or
an empty one is not (the job still succeeds: the verdict is its result). The verdict goes to
the output file and to ``jobReport.json``, which Pilot 3 sends to PanDA as the job's
metadata, where iDDS's poller reads it (``epic_wfms.wfms.idds.results``): a
process-when-validated workflow then processes the validated STFs only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from epic_wfms.wfms.payloads.calibrate import JOB_REPORT
from epic_wfms.wfms.payloads.reco import reconstruct
from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        summary = reconstruct(args.input)
    except OSError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as error:  # our format, but broken
        summary = {"stf": args.input.name, "format": f"broken: {error}", "n_hits": 0}
    validated = summary.get("format") is None and summary.get("n_hits", 0) > 0
    result = {"stf": args.input.name, "validated": validated,
              "n_hits": summary.get("n_hits", 0), "format": summary.get("format", "EPICSTF1")}
    write_result(args.output, result)
    write_result(Path(JOB_REPORT), result)
    print(f"validation of {args.input.name}: {'ok' if validated else 'rejected'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

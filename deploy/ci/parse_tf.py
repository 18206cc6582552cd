"""Parse every OpenTofu file under the given directories with python-hcl2.

Usage: python parse_tf.py DIR...

Prints one line per file and exits 1 if any file does not parse. python-hcl2
is a parser only: it proves the files are well-formed HCL2, not that the
provider accepts them (checkov and `tofu validate` look further).
"""

import pathlib
import sys

import hcl2


def main(dirs: list[str]) -> int:
    files = sorted(p for d in dirs for p in pathlib.Path(d).rglob("*.tf") if ".terraform" not in p.parts)
    if not files:
        print("parse_tf: no .tf files found", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        try:
            with path.open(encoding="utf-8") as handle:
                hcl2.load(handle)
        except Exception as err:  # the parser raises lark errors of several kinds
            failed += 1
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"  FAIL {path}: {type(err).__name__}: {first}")
        else:
            print(f"  ok   {path}")
    print(f"parse_tf: {len(files) - failed} of {len(files)} files parsed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

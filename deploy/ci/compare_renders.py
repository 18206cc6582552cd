"""Compare two renders of the same kustomization as sets of objects.

Usage: python compare_renders.py A.yaml B.yaml
Exits 1 and prints the differing objects when they differ (order of objects
and of mapping keys is ignored).
"""

import json
import sys

import yaml


def index(path):
    with open(path, encoding="utf-8") as handle:
        docs = [d for d in yaml.safe_load_all(handle) if d]
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): json.dumps(d, sort_keys=True) for d in docs}


def main(a, b):
    left, right = index(a), index(b)
    differ = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    for key in differ:
        print(f"  differs: {key} (in first: {key in left}, in second: {key in right})")
    print(f"compare_renders: {len(left)} vs {len(right)} objects, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

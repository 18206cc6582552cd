"""Assert the settings deploy/nats/values.yaml must keep (the chart itself
cannot be rendered offline, so this checks our values, not the chart).

Usage: python check_nats_values.py deploy/nats/values.yaml
"""

import sys

import yaml


def get(tree, dotted):
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


REQUIRED = {
    "config.cluster.enabled": True,
    "config.cluster.replicas": 3,
    "config.jetstream.enabled": True,
    "config.jetstream.fileStore.enabled": True,
    "config.jetstream.fileStore.pvc.enabled": True,
    "config.jetstream.merge.sync_interval": "always",
}


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    failed = 0
    for key, want in REQUIRED.items():
        got = get(values, key)
        status = "ok  " if got == want else "FAIL"
        failed += got != want
        print(f"  {status} {key} = {got!r} (want {want!r})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

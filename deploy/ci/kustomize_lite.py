"""A small, honest stand-in for `kustomize build`, used by check-deploy.sh
only when neither `kustomize` nor `kubectl kustomize` is installed.

It implements exactly the subset of kustomize that deploy/k8s uses and
refuses (exit 2) any kustomization field it does not implement:

  resources           files (multi-document YAML) and directories (nested builds)
  namespace           set on every namespaced object
  labels              pairs added to metadata.labels (includeSelectors: false
                      and includeTemplates unset only)
  configMapGenerator  literals / envs, behavior create or merge, options.labels;
                      name suffixed with kustomize's content hash, and
                      references from pod specs rewritten
  images              name -> newName / newTag / digest, in pod templates
  patches             inline JSON 6902 operations (add, replace, remove) with
                      a target selected by kind and name

When kubectl is present the check script renders with both and compares the
results, which keeps this file honest.

Usage: python kustomize_lite.py DIR  (YAML stream on stdout)
"""

import copy
import hashlib
import json
import pathlib
import sys

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume", "StorageClass", "PriorityClass"}


class Unsupported(Exception):
    """A kustomization uses something this renderer does not implement."""


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def read_env_file(path):
    pairs = {}
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        pairs[key] = value
    return pairs


def config_map_hash(cm):
    """kustomize's ConfigMap hash: sha256 of {kind, name, data} as compact
    JSON with sorted keys, first 10 hex digits with some digits/letters
    swapped so the suffix never forms words. kustomize 5 looks the name up
    with yaml.Lookup("metadata/name"), which finds nothing, so the name it
    hashes is "" - reproduced here (checked against kubectl kustomize)."""
    encoded = json.dumps({"kind": "ConfigMap", "name": "", "data": cm.get("data", {})},
                         sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def pod_specs(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        yield spec
    elif obj["kind"] == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})


def containers(pod_spec):
    yield from pod_spec.get("initContainers", []) or []
    yield from pod_spec.get("containers", []) or []


def json_pointer_parts(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json6902(obj, ops):
    for op in ops:
        parts = json_pointer_parts(op["path"])
        parent = obj
        for key in parts[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "remove":
                del parent[index]
            else:
                raise Unsupported(f"JSON patch op {kind}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise KeyError(f"replace of missing path {op['path']}")
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            else:
                raise Unsupported(f"JSON patch op {kind}")


def build(directory):
    """Returns (objects, generated) where generated holds the names of the
    ConfigMaps that still need their hash suffix."""
    directory = pathlib.Path(directory)
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kust) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}/kustomization.yaml: fields {sorted(unknown)}")

    objects, generated = [], set()
    for entry in kust.get("resources", []):
        path = directory / entry
        if path.is_dir():
            sub_objects, sub_generated = build(path)
            objects += sub_objects
            generated |= sub_generated
        else:
            objects += load_yaml_docs(path)

    for gen in kust.get("configMapGenerator", []):
        extra = set(gen) - {"name", "behavior", "literals", "envs", "options"}
        if extra or set(gen.get("options", {})) - {"labels"}:
            raise Unsupported(f"configMapGenerator fields {sorted(extra)}")
        data = {}
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        for env in gen.get("envs", []):
            data.update(read_env_file(directory / env))
        behavior = gen.get("behavior", "create")
        labels = gen.get("options", {}).get("labels", {})
        if behavior == "merge":
            target = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == gen["name"])
            target.setdefault("data", {}).update(data)
            target["metadata"].setdefault("labels", {}).update(labels)
        elif behavior == "create":
            meta = {"name": gen["name"]}
            if labels:
                meta["labels"] = dict(labels)
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
            generated.add(gen["name"])
        else:
            raise Unsupported(f"configMapGenerator behavior {behavior}")

    for patch in kust.get("patches", []):
        if set(patch) - {"target", "patch"} or set(patch.get("target", {})) - {"kind", "name"}:
            raise Unsupported(f"patch form {patch}")
        ops = yaml.safe_load(patch["patch"])
        if not isinstance(ops, list):
            raise Unsupported("only JSON 6902 patches (a list of operations) are implemented")
        target = patch["target"]
        matched = [o for o in objects
                   if o["kind"] == target.get("kind", o["kind"]) and o["metadata"]["name"] == target.get("name", o["metadata"]["name"])]
        if not matched:
            raise KeyError(f"patch target {target} matches nothing")
        for obj in matched:
            apply_json6902(obj, ops)

    if "namespace" in kust:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kust["namespace"]

    for group in kust.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates") or set(group) - {"pairs", "includeSelectors"}:
            raise Unsupported(f"labels form {group}")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(group["pairs"])

    for image in kust.get("images", []):
        if set(image) - {"name", "newName", "newTag", "digest"}:
            raise Unsupported(f"images form {image}")
        for obj in objects:
            for spec in pod_specs(obj):
                for container in containers(spec):
                    ref = container.get("image", "")
                    name = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.split("/")[-1] or "@" in ref else ref
                    if name != image["name"]:
                        continue
                    new = image.get("newName", name)
                    if "digest" in image:
                        new += "@" + image["digest"]
                    elif "newTag" in image:
                        new += ":" + image["newTag"]
                    container["image"] = new
    return objects, generated


def finish(objects, generated):
    """Hash-suffix generated ConfigMaps and rewrite the references to them."""
    renames = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in generated:
            old = obj["metadata"]["name"]
            renames[old] = f"{old}-{config_map_hash(obj)}"
            obj["metadata"]["name"] = renames[old]
    for obj in objects:
        for spec in pod_specs(obj):
            for volume in spec.get("volumes", []) or []:
                if "configMap" in volume and volume["configMap"].get("name") in renames:
                    volume["configMap"]["name"] = renames[volume["configMap"]["name"]]
            for container in containers(spec):
                for source in container.get("envFrom", []) or []:
                    ref = source.get("configMapRef")
                    if ref and ref.get("name") in renames:
                        ref["name"] = renames[ref["name"]]
                for env in container.get("env", []) or []:
                    ref = env.get("valueFrom", {}).get("configMapKeyRef")
                    if ref and ref.get("name") in renames:
                        ref["name"] = renames[ref["name"]]
    return objects


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = finish(*build(argv[1]))
    except Unsupported as err:
        print(f"kustomize_lite: unsupported: {err}", file=sys.stderr)
        return 2
    yaml.safe_dump_all([copy.deepcopy(o) for o in objects], sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Assert the trust boundaries of a rendered deploy/k8s overlay (the rules of
docs/deployment.md that kubernetes-validate and checkov cannot know):

  - every workload runs as its own ServiceAccount licensed-<component>, which
    maps (Workload Identity) to its own GSA licensed-<component>@...;
  - NATS over TLS (NATS_URL tls://, NATS_CA_FILE) as the component's own NATS
    user, its password from the Secret licensed-nats-users; the reaper and the
    migrate Job use no NATS;
  - every CA file a container names (REDIS_CA_FILE, NATS_CA_FILE, sslrootcert)
    is mounted from the Secret licensed-tls at /etc/licensed/tls;
  - only the migrate Job reads the migration user's Secret;
  - /metrics on a port `metrics` 9090 in every Deployment; no Service exposes
    it, the Ingress routes only the API port, and NetworkPolicies admit 9090
    only from gmp-system;
  - only the signer mounts the checkpoint bucket (Cloud Storage FUSE), at
    CHECKPOINT_DIR.

Usage: python check_edges.py RENDERED.yaml
"""

import sys

import yaml

NATS_USERS = {"serve": "api", "publish": "publisher", "sign": "signer", "project": "projector", "reap": None, "migrate": None}
TLS_DIR = "/etc/licensed/tls"
GCSFUSE = "gcsfuse.csi.storage.gke.io"


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def env_map(container):
    return {e["name"]: e for e in container.get("env", []) or []}


def config_value(configmap, container, name):
    env = env_map(container).get(name)
    if env is not None:
        return env.get("value")
    return configmap.get("data", {}).get(name)


def main(path):
    with open(path, encoding="utf-8") as handle:
        objects = [d for d in yaml.safe_load_all(handle) if d]
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    failures = []

    def check(condition, message):
        if not condition:
            failures.append(message)

    accounts = {o["metadata"]["name"]: o for o in by_kind.get("ServiceAccount", [])}
    configmaps = [o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"].startswith("licensed-config")]
    check(len(configmaps) == 1, "exactly one ConfigMap licensed-config expected")
    configmap = configmaps[0] if configmaps else {}
    workloads = [o for o in by_kind.get("Deployment", []) + by_kind.get("Job", [])
                 if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "licensed"]
    seen = set()
    for obj in workloads:
        name = obj["metadata"]["name"]
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        seen.add(component)
        if component not in NATS_USERS:
            failures.append(f"{name}: unknown component {component!r}")
            continue
        spec = pod_spec(obj)
        account = spec.get("serviceAccountName")
        check(account == f"licensed-{component}", f"{name}: serviceAccountName {account!r}, want licensed-{component}")
        gsa = accounts.get(account, {}).get("metadata", {}).get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
        check(gsa.startswith(f"licensed-{component}@"), f"{name}: ServiceAccount {account} maps to GSA {gsa!r}")
        check(spec.get("automountServiceAccountToken") is False, f"{name}: mounts a Kubernetes API token")

        volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
        tls_keys = set()
        for volume in volumes.values():
            if volume.get("secret", {}).get("secretName") == "licensed-tls":
                tls_keys = {i["path"] for i in volume["secret"].get("items", [])}
        containers = spec.get("containers", [])
        check(len(containers) == 1, f"{name}: one container expected")
        container = containers[0]
        env = env_map(container)
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", []) or []}

        def secret_of(var):
            return env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})

        # Postgres: the migration user's URL for the Job only.
        want_db = "licensed-migrate-secrets" if component == "migrate" else "licensed-secrets"
        check(secret_of("DATABASE_URL").get("name") == want_db, f"{name}: DATABASE_URL not from {want_db}")
        check("postgres-ca.pem" in tls_keys, f"{name}: postgres-ca.pem not mounted (sslrootcert)")

        # Every CA file is in the mounted licensed-tls Secret.
        tls_mounted = mounts.get(TLS_DIR) in volumes and volumes[mounts[TLS_DIR]].get("secret", {}).get("secretName") == "licensed-tls"
        check(tls_mounted, f"{name}: Secret licensed-tls not mounted at {TLS_DIR}")
        for var in ("REDIS_CA_FILE", "NATS_CA_FILE"):
            value = config_value(configmap, container, var)
            if value:
                check(value.startswith(TLS_DIR + "/") and value[len(TLS_DIR) + 1:] in tls_keys,
                      f"{name}: {var}={value} is not a mounted key of licensed-tls")
        if "REDIS_URL" in env:
            check(config_value(configmap, container, "REDIS_CA_FILE"), f"{name}: REDIS_URL without REDIS_CA_FILE")

        # NATS: TLS, own user, password from the Secret.
        user = NATS_USERS[component]
        got_user = config_value(configmap, container, "NATS_USER")
        check(got_user == user, f"{name}: NATS_USER {got_user!r}, want {user!r}")
        if user:
            check(str(configmap.get("data", {}).get("NATS_URL", "")).startswith("tls://"), "NATS_URL must be tls://")
            check(config_value(configmap, container, "NATS_CA_FILE"), f"{name}: no NATS_CA_FILE")
            ref = secret_of("NATS_PASSWORD")
            check(ref.get("name") == "licensed-nats-users" and ref.get("key") == user,
                  f"{name}: NATS_PASSWORD not from licensed-nats-users/{user}")
        else:
            check("NATS_PASSWORD" not in env, f"{name}: has a NATS password but uses no NATS")

        # Metrics on 9090, a Deployment's port named `metrics`.
        if obj["kind"] == "Deployment":
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", []) or []}
            check(ports.get("metrics") == 9090, f"{name}: no port metrics 9090")

        # The checkpoint bucket: the signer only.
        fuse = [v for v in volumes.values() if v.get("csi", {}).get("driver") == GCSFUSE]
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {}) or {}
        if component == "sign":
            check(len(fuse) == 1, f"{name}: the checkpoint bucket is not mounted")
            check(annotations.get("gke-gcsfuse/volumes") == "true", f"{name}: pod annotation gke-gcsfuse/volumes missing")
            directory = config_value(configmap, container, "CHECKPOINT_DIR")
            check(fuse and mounts.get(directory) == fuse[0]["name"], f"{name}: CHECKPOINT_DIR {directory!r} is not the bucket's mount")
        else:
            check(not fuse and "gke-gcsfuse/volumes" not in annotations, f"{name}: mounts the checkpoint bucket")
            check(not config_value(configmap, container, "CHECKPOINT_DIR"), f"{name}: sets CHECKPOINT_DIR")
    check(seen == set(NATS_USERS), f"components {sorted(seen)}, want {sorted(NATS_USERS)}")

    metrics_addr = configmap.get("data", {}).get("METRICS_ADDR", "")
    check(metrics_addr.endswith(":9090"), f"METRICS_ADDR {metrics_addr!r} is not port 9090")

    # Nothing routes the metrics port.
    for service in by_kind.get("Service", []):
        for port in service["spec"].get("ports", []):
            check(port.get("targetPort") not in (9090, "metrics") and port.get("port") != 9090,
                  f"Service {service['metadata']['name']} exposes the metrics port")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for ingress in by_kind.get("Ingress", []):
        backends = [ingress["spec"].get("defaultBackend", {}).get("service")]
        for rule in ingress["spec"].get("rules", []):
            backends += [p["backend"].get("service") for p in rule.get("http", {}).get("paths", [])]
        for backend in filter(None, backends):
            port = backend.get("port", {})
            target = next((p.get("targetPort") for p in services.get(backend["name"], {}).get("spec", {}).get("ports", [])
                           if p.get("name") == port.get("name") or p.get("port") == port.get("number")), None)
            check(target in ("http", 8080), f"Ingress {ingress['metadata']['name']} routes to {backend} (target {target!r})")

    # 9090 only from gmp-system; the scraper gets nothing else.
    for policy in by_kind.get("NetworkPolicy", []):
        for rule in policy["spec"].get("ingress", []) or []:
            ports = {p.get("port") for p in rule.get("ports", []) or []}
            sources = rule.get("from", []) or []
            from_gmp = sources and all(
                s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "gmp-system"
                and "podSelector" not in s and "ipBlock" not in s for s in sources)
            if not ports or 9090 in ports or "metrics" in ports:
                check(from_gmp, f"NetworkPolicy {policy['metadata']['name']} admits the metrics port from outside gmp-system")
            if from_gmp:
                check(ports <= {9090, "metrics"}, f"NetworkPolicy {policy['metadata']['name']} admits gmp-system to {sorted(map(str, ports))}")

    for line in failures:
        print(f"  FAIL {line}")
    print(f"check_edges: {len(workloads)} workloads, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

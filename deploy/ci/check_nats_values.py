"""Assert the settings deploy/nats/values.yaml must keep (the chart itself
cannot be rendered offline, so this checks our values, not the chart):

  - the cluster and JetStream settings the stream relies on;
  - TLS on client connections (a certificate from a Secret), no client
    certificate required, no anonymous user;
  - the users and permissions are exactly those of deploy/nats/permissions.conf,
    the file the local services and the tests run. Both files are parsed and
    compared as data (order of subjects ignored); any difference fails;
  - every password is a $VARIABLE that the server's environment takes from a
    Secret, never a literal.

Usage: python check_nats_values.py deploy/nats/values.yaml [deploy/nats/permissions.conf]
"""

import pathlib
import re
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
    "config.nats.tls.enabled": True,
}


# ---------------------------------------------------------------------------
# A parser for the NATS server configuration format, the subset that
# permissions.conf uses: `#` and `//` comments; `key: value`, `key = value`
# and `key value`; maps `{...}` and arrays `[...]` whose items are separated
# by commas, semicolons or newlines; quoted and bare strings, numbers,
# booleans; `$NAME` references to a variable defined earlier in the file
# (substituted) or else to the server's environment (kept as "$NAME").
# `include` is refused: this check would not see the included file.


class ConfError(Exception):
    """permissions.conf is not in the subset this parser understands."""


class ConfParser:
    def __init__(self, text):
        self.text = text
        self.pos = 0
        self.variables = {}

    def error(self, message):
        line = self.text.count("\n", 0, self.pos) + 1
        return ConfError(f"line {line}: {message}")

    def skip(self, newlines=True):
        """Skips blanks and comments (and newlines and separators if asked)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch in "\n,;"):
                self.pos += 1
            elif ch == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def key(self):
        if self.peek() in "\"'":
            return self.quoted()
        match = re.compile(r"[A-Za-z0-9_$.\-]+").match(self.text, self.pos)
        if not match:
            raise self.error(f"expected a key, found {self.peek()!r}")
        self.pos = match.end()
        return match.group()

    def quoted(self):
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.error("unterminated string")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def entries(self, closing):
        """key/value pairs until `closing` ("}" or end of text)."""
        result = {}
        while True:
            self.skip()
            if self.peek() == closing or (closing == "" and self.pos >= len(self.text)):
                if closing:
                    self.pos += 1
                return result
            if self.pos >= len(self.text):
                raise self.error(f"missing {closing!r}")
            key = self.key()
            if key == "include":
                raise self.error("include is not supported by this check")
            self.skip(newlines=False)
            if self.peek() in ":=":
                self.pos += 1
                self.skip(newlines=False)
            if key in result:
                raise self.error(f"duplicate key {key!r}")
            result[key] = self.value()
            if closing == "":
                # Top-level keys are variables for later $references.
                self.variables[key] = result[key]

    def value(self):
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self.entries("}")
        if ch == "[":
            self.pos += 1
            items = []
            while True:
                self.skip()
                if self.peek() == "]":
                    self.pos += 1
                    return items
                if self.pos >= len(self.text):
                    raise self.error("missing ']'")
                items.append(self.value())
        if ch in "\"'":
            return self.quoted()
        match = re.compile(r"[^\s,;\]\}#]+").match(self.text, self.pos)
        if not match:
            raise self.error(f"expected a value, found {ch!r}")
        self.pos = match.end()
        word = match.group()
        if word.startswith("$"):
            name = word[1:]
            return self.variables.get(name, word)
        if word.lower() in ("true", "yes", "on"):
            return True
        if word.lower() in ("false", "no", "off"):
            return False
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        return word


def parse_conf(text):
    return ConfParser(text).entries("")


# ---------------------------------------------------------------------------
# Normal form of an authorization block, so that the two files compare as
# data: a permission's bare list means `allow`; subject lists are sorted;
# passwords `<< $VAR >>` (the chart's raw-variable syntax) become `$VAR`.


def normal_permission(value):
    if isinstance(value, list):
        value = {"allow": value}
    if not isinstance(value, dict):
        raise ValueError(f"permission must be a list or a map, got {value!r}")
    return {k: sorted(v) if isinstance(v, list) else v for k, v in value.items()}


def normal_user(user):
    out = {}
    for key, value in user.items():
        if key == "password" and isinstance(value, str):
            match = re.fullmatch(r"<<\s*(\$\w+)\s*>>", value)
            value = match.group(1) if match else value
        if key == "permissions" and isinstance(value, dict):
            value = {k: normal_permission(v) if k in ("publish", "subscribe") else v for k, v in value.items()}
        out[key] = value
    return out


def normal_authorization(block):
    block = dict(block or {})
    users = block.pop("users", [])
    normal = {"users": {u.get("user"): normal_user(u) for u in users}}
    if len(normal["users"]) != len(users):
        raise ValueError("a user is listed twice")
    normal.update(block)
    return normal


def diff(path, left, right, out):
    """Appends a line per difference between left (values) and right (conf)."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            where = f"{path}.{key}"
            if key not in right:
                out.append(f"{where}: only in values.yaml ({left[key]!r})")
            elif key not in left:
                out.append(f"{where}: only in permissions.conf ({right[key]!r})")
            else:
                diff(where, left[key], right[key], out)
    elif left != right:
        out.append(f"{path}: values.yaml {left!r} != permissions.conf {right!r}")


def check_authorization(values, conf_path):
    failures = []
    conf = parse_conf(pathlib.Path(conf_path).read_text(encoding="utf-8"))
    want = normal_authorization(conf.get("authorization"))
    got = normal_authorization(get(values, "config.merge.authorization"))
    if not want["users"]:
        failures.append(f"{conf_path} defines no users")
    diff("authorization", got, want, failures)
    for key in ("no_auth_user", "accounts"):
        if get(values, f"config.merge.{key}") is not None:
            failures.append(f"config.merge.{key} is set: users would not be only those of {conf_path}")

    # Passwords: $VARIABLES from a Secret in the server's environment.
    env = get(values, "container.env") or {}
    for name, user in got["users"].items():
        password = user.get("password")
        if not (isinstance(password, str) and re.fullmatch(r"\$\w+", password)):
            failures.append(f"user {name}: password must be << $VARIABLE >>, not a literal")
            continue
        source = env.get(password[1:])
        if not (isinstance(source, dict) and get(source, "valueFrom.secretKeyRef.name")):
            failures.append(f"user {name}: container.env.{password[1:]} must come from a secretKeyRef")
    print(f"  {'ok  ' if not failures else 'FAIL'} users and permissions = {conf_path} ({', '.join(sorted(want['users']))})")
    for line in failures:
        print(f"       {line}")
    return len(failures)


def check_tls(values):
    failures = []
    tls = get(values, "config.nats.tls") or {}
    if not tls.get("secretName"):
        failures.append("config.nats.tls.secretName: the server certificate's Secret is not set")
    merge = tls.get("merge") or {}
    if merge.get("verify") is False or tls.get("insecure"):
        failures.append("config.nats.tls weakens verification")
    print(f"  {'ok  ' if not failures else 'FAIL'} client TLS from Secret {tls.get('secretName')!r}")
    for line in failures:
        print(f"       {line}")
    return len(failures)


def main(path: str, conf_path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    failed = 0
    for key, want in REQUIRED.items():
        got = get(values, key)
        status = "ok  " if got == want else "FAIL"
        failed += got != want
        print(f"  {status} {key} = {got!r} (want {want!r})")
    failed += check_tls(values)
    try:
        failed += check_authorization(values, conf_path)
    except (ConfError, ValueError) as err:
        print(f"  FAIL {conf_path}: {err}")
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    values_path = sys.argv[1]
    permissions = sys.argv[2] if len(sys.argv) == 3 else str(pathlib.Path(values_path).with_name("permissions.conf"))
    sys.exit(main(values_path, permissions))

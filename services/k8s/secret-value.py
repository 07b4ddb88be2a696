#!/usr/bin/env python3
"""Print the value of KEY from the Secret objects in a kubectl JSON List on stdin.

services/k8s.sh: `kubectl kustomize k8s/overlays/dev | kubectl create --dry-run=client -o json -f -`
gives the rendered objects; the MySQL stand-in's read-only user gets ums-find's own password,
whether the Secret is written out (stringData) or generated (data, base64).
"""

import base64
import json
import sys


def main() -> int:
    key = sys.argv[1]
    text, pos, items = sys.stdin.read(), 0, []
    decoder = json.JSONDecoder()
    while pos < len(text):  # one JSON document per object, one after the other
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        items.extend(doc.get("items", [doc]))
    for item in items:
        if item.get("kind") != "Secret":
            continue
        if key in item.get("stringData", {}):
            print(item["stringData"][key])
            return 0
        if key in item.get("data", {}):
            print(base64.b64decode(item["data"][key]).decode())
            return 0
    print(f"no Secret holds {key}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

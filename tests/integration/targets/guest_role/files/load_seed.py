"""Read a NoCloud seed ISO as cloud-init does: user-data must be '#cloud-config' then YAML."""
import json
import subprocess
import sys

import yaml

iso = sys.argv[1]
out = {}
for name in ("user-data", "meta-data"):
    text = subprocess.run(["isoinfo", "-J", "-i", iso, "-x", "/" + name], check=True,
                          capture_output=True, text=True).stdout
    out[name + "-first-line"] = text.split("\n", 1)[0]
    out[name] = yaml.safe_load(text)
print(json.dumps(out))

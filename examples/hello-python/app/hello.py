"""The program baked into the hello-python image."""
import importlib.metadata
import os
import sys

packages = [p for p in os.environ.get("HELLO_PACKAGES", "").split(",") if p]
print(f"{os.environ.get('GREETING', 'hello')} from Python {sys.version_info.major}.{sys.version_info.minor}")
for name in packages:
    print(f"{name} {importlib.metadata.version(name)}")

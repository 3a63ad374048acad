"""An Azure Blob Storage server for the tests: Azurite (npm) on a loopback port it picks, with
the containers named on the command line created. Prints `port N` and serves until stdin closes.

Usage: azurite_server.py DATA_DIR CONTAINER...
"""
import re
import subprocess
import sys

from azure.storage.blob import BlobServiceClient

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
data, containers = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(
    ["azurite-blob", "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", data,
     "--skipApiVersionCheck", "--loose"],
    stdout=subprocess.PIPE, text=True)
port = None
for line in proc.stdout:
    m = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
if port is None:
    proc.kill()
    sys.exit("azurite did not start")
conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
client = BlobServiceClient.from_connection_string(conn)
for c in containers:
    client.create_container(c)
print(f"port {port}", flush=True)
sys.stdin.read()
proc.kill()

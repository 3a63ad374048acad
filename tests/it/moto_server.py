"""An S3-protocol server for the tests: moto's server mode on 127.0.0.1, on a port the OS picks.
Creates the buckets named on the command line, prints `port N`, and serves until stdin closes
(the test process holding the pipe ends, so the server never outlives its test)."""
import sys

import boto3
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server._server.server_port
s3 = boto3.client(
    "s3",
    endpoint_url=f"http://127.0.0.1:{port}",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
for bucket in sys.argv[1:]:
    s3.create_bucket(Bucket=bucket)
print(f"port {port}", flush=True)
sys.stdin.read()
server.stop()

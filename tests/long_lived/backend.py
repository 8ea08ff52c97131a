"""The app's versions for tests/long_lived.rs: each version answers as itself over WebSocket,
plain HTTP/1.1 and gRPC, on free loopback ports.

    python3 backend.py v1 v2

prints one JSON line, {"v1": {"http": PORT, "grpc": PORT}, "v2": {...}}, once every server
listens, and runs until its standard input closes (the test's end).

HTTP port (the `websockets` package's server, HTTP/1.1):
  - a WebSocket upgrade: every text message M is answered with the JSON
    {"version", "echo": M, "conn": N, "routing", "cookie"}, where N numbers the upgrades this
    version accepted (the same N on every answer of one connection: one upstream connection) and
    routing/cookie are the routing header and Cookie the upgrade request carried;
  - any other GET: 200, `x-served-version: VERSION`, and the JSON
    {"version", "path", "routing", "cookie", "user"} (user: the x-user-id header), then the
    connection closes.

gRPC port (`grpcio`, no generated code: a generic handler over raw bytes), service sticky.Echo:
  - unary Who(payload): {"version", "echo": payload, "user", "routing"} (from the call's metadata);
  - bidi Chat: each message M is answered with {"version", "echo": M, "stream": N, "seq": K},
    N numbering this version's Chat streams, K counting the stream's messages.
"""

import asyncio
import itertools
import json
import sys
import threading

import grpc
import grpc.aio
from websockets.asyncio.server import serve

ROUTING_HEADER = "x-canary-version"


def http_app(version):
    upgrades = itertools.count(1)

    def process_request(connection, request):
        headers = request.headers
        if headers.get("Upgrade", "").lower() == "websocket":
            return None  # the handshake goes on: 101
        body = json.dumps(
            {
                "version": version,
                "path": request.path,
                "routing": headers.get(ROUTING_HEADER),
                "cookie": headers.get("Cookie"),
                "user": headers.get("x-user-id"),
            }
        )
        response = connection.respond(200, body)
        response.headers["x-served-version"] = version
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def websocket(connection):
        conn = next(upgrades)
        headers = connection.request.headers
        seen = {"routing": headers.get(ROUTING_HEADER), "cookie": headers.get("Cookie")}
        async for message in connection:
            await connection.send(json.dumps({"version": version, "echo": message, "conn": conn, **seen}))

    return websocket, process_request


def grpc_handler(version):
    streams = itertools.count(1)

    def metadata(context, name):
        return next((v for k, v in context.invocation_metadata() if k == name), None)

    async def who(request, context):
        return json.dumps(
            {
                "version": version,
                "echo": request.decode(),
                "user": metadata(context, "x-user-id"),
                "routing": metadata(context, ROUTING_HEADER),
            }
        ).encode()

    async def chat(requests, context):
        stream = next(streams)
        seq = 0
        async for request in requests:
            seq += 1
            yield json.dumps({"version": version, "echo": request.decode(), "stream": stream, "seq": seq}).encode()

    # No serializers: requests and responses stay bytes.
    return grpc.method_handlers_generic_handler(
        "sticky.Echo",
        {
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )


async def main(versions):
    ports = {}
    keep = []
    for version in versions:
        handler, process_request = http_app(version)
        ws = await serve(handler, "127.0.0.1", 0, process_request=process_request, ping_interval=None)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc_handler(version),))
        grpc_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        keep += [ws, server]
        ports[version] = {"http": ws.sockets[0].getsockname()[1], "grpc": grpc_port}
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    # The test holds our stdin: when it closes (the test ended, or died), stop.
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set_result, None)), daemon=True
    ).start()
    await done


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: backend.py VERSION...")
    asyncio.run(main(sys.argv[1:]))

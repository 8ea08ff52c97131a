"""Real clients from the Python ecosystem for tests/long_lived.rs, driven over stdin/stdout:
one JSON command per line in, one JSON answer per line out ({"error": ...} when it failed).

    python3 client.py GATEWAY_HOST GATEWAY_PORT

Commands (`op`):
  ws_open   {conns: [{id, host, path, headers}]}: a WebSocket upgrade per conn (`websockets`,
            the sync client, over a socket to the gateway with the conn's Host), then one message;
            answers [{status, set_cookie: [...], reply}] in order;
  ws_send   {ids: [...]}: one message on each open WebSocket; answers [reply, ...];
  ws_close  {ids: [...]}: closes them; answers [close code, ...];
  h2        {host, streams: [{path, headers: [[name, value], ...]}]}: ONE TCP connection, HTTP/2
            with prior knowledge (h2c, `h2`), every stream's HEADERS sent before any response is
            read (as many at once as the server's SETTINGS allow); answers {max_concurrent_streams,
            peak_open, streams: [{status, headers: [[name, value], ...], body}]};
  grpc_who  {authority, calls: [{user, payload}]}: unary sticky.Echo/Who calls (`grpcio`, one
            channel, all in flight at once), metadata x-user-id; answers [{reply, set_cookie}];
  chat_open {authority, streams: [{id, user}]}: a bidi sticky.Echo/Chat call per stream, then one
            message; answers [reply, ...];
  chat_send {ids: [...]}: one message on each open Chat; answers [reply, ...];
  chat_close {ids: [...]}: ends the requests, reads the rest; answers [{code, extra}, ...].
"""

import concurrent.futures
import json
import queue
import socket
import sys

import grpc
import h2.config
import h2.connection
import h2.events
from websockets.sync.client import connect

GATEWAY = (sys.argv[1], int(sys.argv[2]))
TIMEOUT = 20

sockets = {}
sent = {}
chats = {}
channels = {}


def message(conn_id):
    sent[conn_id] = sent.get(conn_id, 0) + 1
    return f"{conn_id}#{sent[conn_id]}"


def ws_exchange(conn_id):
    ws = sockets[conn_id]
    text = message(conn_id)
    ws.send(text)
    reply = json.loads(ws.recv(timeout=TIMEOUT))
    reply["sent"] = text
    return reply


def ws_open(cmd):
    out = []
    for conn in cmd["conns"]:
        sock = socket.create_connection(GATEWAY, timeout=TIMEOUT)
        ws = connect(
            f"ws://{conn['host']}{conn['path']}",
            sock=sock,
            additional_headers=conn.get("headers", {}),
            open_timeout=TIMEOUT,
            ping_interval=None,
            legacy=True,  # a connection object to keep open across commands, not a context manager
        )
        sockets[conn["id"]] = ws
        out.append(
            {
                "status": ws.response.status_code,
                "set_cookie": ws.response.headers.get_all("Set-Cookie"),
                "reply": ws_exchange(conn["id"]),
            }
        )
    return out


def ws_send(cmd):
    return [ws_exchange(i) for i in cmd["ids"]]


def ws_close(cmd):
    def close(ws):
        ws.close()
        return ws.close_code

    # In parallel: each close waits for the TCP close after the closing handshake, which Envoy
    # delays (its delayed_close_timeout, 1 s) until the client closes first.
    with concurrent.futures.ThreadPoolExecutor(max(1, len(cmd["ids"]))) as pool:
        return list(pool.map(close, [sockets.pop(i) for i in cmd["ids"]]))


def h2_streams(cmd):
    sock = socket.create_connection(GATEWAY, timeout=TIMEOUT)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    def receive():
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the gateway closed the HTTP/2 connection")
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        return events

    # The server's SETTINGS say how many streams may be open at once.
    while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in receive()):
        pass
    limit = conn.remote_settings.max_concurrent_streams
    pending = list(enumerate(cmd["streams"]))
    open_streams = {}
    results = [None] * len(pending)
    peak = 0
    while pending or open_streams:
        while pending and len(open_streams) < limit:
            index, stream = pending.pop(0)
            stream_id = conn.get_next_available_stream_id()
            headers = [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", cmd["host"]),
                (":path", stream["path"]),
            ] + [tuple(h) for h in stream.get("headers", [])]
            conn.send_headers(stream_id, headers, end_stream=True)
            open_streams[stream_id] = {"index": index, "status": None, "headers": [], "body": b""}
        sock.sendall(conn.data_to_send())
        peak = max(peak, len(open_streams))
        for event in receive():
            state = open_streams.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived):
                for name, value in event.headers:
                    if name == ":status":
                        state["status"] = int(value)
                    else:
                        state["headers"].append([name, value])
            elif isinstance(event, h2.events.DataReceived):
                state["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                del open_streams[event.stream_id]
                results[state["index"]] = {
                    "status": state["status"],
                    "headers": state["headers"],
                    "body": state["body"].decode("utf-8", "replace"),
                }
            elif isinstance(event, h2.events.StreamReset):
                raise ConnectionError(f"stream {event.stream_id} reset by the gateway: {event.error_code!r}")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise ConnectionError(f"the gateway sent GOAWAY: {event.error_code!r}")
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    return {"max_concurrent_streams": limit, "peak_open": peak, "streams": results}


def channel(authority):
    if authority not in channels:
        target = f"{GATEWAY[0]}:{GATEWAY[1]}"
        chan = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
        # No serializers: requests and answers are bytes, so no generated code is needed.
        channels[authority] = (
            chan,
            chan.unary_unary("/sticky.Echo/Who"),
            chan.stream_stream("/sticky.Echo/Chat"),
        )
    return channels[authority]


def set_cookies(metadata):
    return [v for k, v in (metadata or ()) if k == "set-cookie"]


def grpc_who(cmd):
    _, who, _ = channel(cmd["authority"])
    calls = [
        who.future(c["payload"].encode(), metadata=(("x-user-id", c["user"]),), timeout=TIMEOUT)
        for c in cmd["calls"]
    ]
    return [{"reply": json.loads(c.result()), "set_cookie": set_cookies(c.initial_metadata())} for c in calls]


def requests_from(q):
    while True:
        item = q.get()
        if item is None:
            return
        yield item


def chat_exchange(stream_id):
    q, responses = chats[stream_id]
    text = message(stream_id)
    q.put(text.encode())
    reply = json.loads(next(responses))
    reply["sent"] = text
    return reply


def chat_open(cmd):
    _, _, chat = channel(cmd["authority"])
    out = []
    for stream in cmd["streams"]:
        q = queue.Queue()
        # A deadline far beyond the test: a stream that stops answering fails, never hangs.
        responses = chat(requests_from(q), metadata=(("x-user-id", stream["user"]),), timeout=300)
        chats[stream["id"]] = (q, responses)
        out.append(chat_exchange(stream["id"]))
    return out


def chat_send(cmd):
    return [chat_exchange(i) for i in cmd["ids"]]


def chat_close(cmd):
    out = []
    for i in cmd["ids"]:
        q, responses = chats.pop(i)
        q.put(None)
        extra = [r.decode() for r in responses]
        out.append({"code": responses.code().name, "extra": extra})
    return out


OPS = {
    "ws_open": ws_open,
    "ws_send": ws_send,
    "ws_close": ws_close,
    "h2": h2_streams,
    "grpc_who": grpc_who,
    "chat_open": chat_open,
    "chat_send": chat_send,
    "chat_close": chat_close,
}

for line in sys.stdin:
    command = json.loads(line)
    try:
        answer = OPS[command["op"]](command)
    except Exception as error:  # the test prints it and fails
        answer = {"error": f"{command['op']}: {type(error).__name__}: {error}"}
    print(json.dumps(answer), flush=True)

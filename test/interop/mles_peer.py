"""An Mles client written against python3-websockets, not this project:
join -> publish -> receive -> history, printed as JSON lines for the test."""
import asyncio
import json
import sys

import websockets


async def join(url, uid, channel, auth):
    ws = await websockets.connect(url, subprotocols=["mles-websocket"])
    assert ws.subprotocol == "mles-websocket", ws.subprotocol
    await ws.send(json.dumps({"uid": uid, "channel": channel, "auth": auth}))
    return ws


async def receive(ws):
    message = await asyncio.wait_for(ws.recv(), 5)
    if isinstance(message, bytes):
        return {"binary": message.hex()}
    return {"text": message}


async def main(url, auths):
    alice = await join(url, "alice", "interop", auths["alice"])
    await asyncio.sleep(0.2)
    bob = await join(url, "bob", "interop", auths["bob"])
    print(json.dumps({"bob replay": await receive(bob)}), flush=True)
    await asyncio.sleep(0.2)
    await alice.send("hello from python")
    await alice.send(bytes([0, 1, 2, 255]))
    print(json.dumps({"bob got": [await receive(bob), await receive(bob)]}), flush=True)
    await bob.send("hi alice")
    print(json.dumps({"alice got": await receive(alice)}), flush=True)
    carol = await join(url, "carol", "interop", auths["carol"])
    print(json.dumps({"carol history": [await receive(carol) for _ in range(5)]}), flush=True)
    try:
        dup = await join(url, "alice", "interop", auths["alice"])
        await asyncio.wait_for(dup.recv(), 5)
    except websockets.exceptions.ConnectionClosed as closed:
        print(json.dumps({"duplicate closed": [closed.code, closed.reason]}), flush=True)
    for ws in (alice, bob, carol):
        await ws.close()


asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))

#!/usr/bin/env python3
"""A slow agent for bench/gateway.py: answers POST /task (any path but the two below) after a delay.

Usage: python3 bench/gateway_slow.py PORT [DELAY_SECONDS]   (default delay 1.0)

HTTP/1.1 with keep-alive, asyncio, standard library only. Every request is counted, including
GET /health, which answers at once ({"status":"healthy"}: mend's probe timeout is 1 s, and the
slowness under test is the task's, not the probe's). GET /__count answers the count so far and
is not counted itself. Prints "ready" on stdout once it listens.
"""
import asyncio
import sys

COUNT = 0
TASK_BODY = b'{"result":"ok","agent":"backend"}'


def answer(status, body):
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (status, b"OK" if status == 200 else b"Not Found", len(body)) + body)


async def serve(reader, writer, delay):
    global COUNT
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target = (lines[0].split(" ") + ["", ""])[:2]
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            if target == "/__count":
                writer.write(answer(200, b'{"count":%d}' % COUNT))
            else:
                COUNT += 1
                if target == "/health":
                    writer.write(answer(200, b'{"status":"healthy"}'))
                else:
                    await asyncio.sleep(delay)
                    writer.write(answer(200, TASK_BODY))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main(port, delay):
    server = await asyncio.start_server(lambda r, w: serve(r, w, delay), "127.0.0.1", port,
                                        backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    try:
        asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) == 3 else 1.0))
    except KeyboardInterrupt:
        pass

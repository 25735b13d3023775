"""Serves one MP4 (H.264) file over RTSP on 127.0.0.1 with GStreamer's RTSP server, for
tests/decode.rs. Debian's python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/deps.sh installs
them); run it with Debian's /usr/bin/python3.

    rtsp_server.py FILE PORT [--die-after SECONDS]

Prints `ready rtsp://127.0.0.1:PORT/clip` on stdout once it listens. With --die-after, the
process exits (as a crashed camera would) that many seconds after the first client connects.
"""
import os
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    path, port = sys.argv[1], sys.argv[2]
    die_after = float(sys.argv[sys.argv.index("--die-after") + 1]) if "--die-after" in sys.argv else None
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # Real time (the file's timestamps pace the stream), as a camera would send it.
    factory.set_launch(
        f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/clip", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    if die_after is not None:
        def connected(_server, _client):
            threading.Timer(die_after, lambda: os._exit(0)).start()
        server.connect("client-connected", connected)
    print(f"ready rtsp://127.0.0.1:{port}/clip", flush=True)
    loop.run()


if __name__ == "__main__":
    main()

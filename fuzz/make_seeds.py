#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/: the seed corpora the fuzz targets start from. Committed; run
again only to change them (needs gst-launch-1.0 with vp8enc, x264enc and opusenc).

- sdp_offer: the real offers the interop tests keep (tests/offers: Chromium, aiortc, webrtc-rs,
  GStreamer's webrtcbin).
- rtp_decode: RTP captured from real VP8, H.264 and Opus encoders (GStreamer's payloaders),
  one byte for the codec (0 VP8, 1 H.264, 2 Opus) then each packet as a 2-byte length and its
  bytes.
- rtp: single packets of those captures.
- trickle, token, layout, config: what the server is sent or given, written out here.
"""
import base64, glob, hashlib, hmac, json, os, shutil, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(ROOT, "seeds")
OFFERS = os.path.join(ROOT, "..", "tests", "offers")
KEY, SECRET = "fuzz-key", "fuzz-secret-that-is-long-enough-0123456789"  # tessera::fuzzing::TOKEN_KEY, TOKEN_SECRET


def target(name):
    d = os.path.join(SEEDS, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def capture(pipeline):
    """The RTP packets a gst-launch pipeline ending in a payloader makes."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["gst-launch-1.0", "-q"] + pipeline.split() +
                       ["!", "identity", "!", "multifilesink",
                        f"location={tmp}/%05d", "next-file=buffer"], check=True)
        return [open(p, "rb").read() for p in sorted(glob.glob(f"{tmp}/*"))]


def jwt(claims, alg="HS256", secret=SECRET):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = enc(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = enc(json.dumps(claims).encode())
    signed = f"{head}.{body}"
    sig = "" if alg == "none" else enc(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest())
    return f"{signed}.{sig}"


def main():
    d = target("sdp_offer")
    for p in sorted(glob.glob(os.path.join(OFFERS, "*.sdp"))):
        shutil.copy(p, d)

    video = "videotestsrc num-buffers=12 pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1"
    captures = {
        0: ("vp8", capture(f"{video} ! vp8enc keyframe-max-dist=6 deadline=1 target-bitrate=200000 "
                           "! rtpvp8pay mtu=600 pt=96")),
        1: ("h264", capture(f"{video} ! x264enc tune=zerolatency key-int-max=6 bitrate=200 "
                            "! video/x-h264,profile=constrained-baseline "
                            "! rtph264pay mtu=600 pt=102 config-interval=-1 aggregate-mode=zero-latency")),
        2: ("opus", capture("audiotestsrc num-buffers=25 samplesperbuffer=960 freq=440 "
                            "! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=111")),
    }
    d = target("rtp_decode")
    r = target("rtp")
    for codec, (name, packets) in captures.items():
        framed = bytes([codec]) + b"".join(len(p).to_bytes(2, "big") + p for p in packets)
        write(d, f"{name}.rtp", framed)
        for i in (0, 1, len(packets) - 1):
            write(r, f"{name}-{i}.rtp", packets[i])

    d = target("trickle")
    write(d, "candidates", "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
          "a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n"
          "a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n"
          "a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\r\n")
    write(d, "end", "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n")
    write(d, "restart", "a=ice-ufrag:ZZy2\r\na=ice-pwd:2cfPmKLZZrDsSWS3NC4X5w2b\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n")

    d = target("token")
    now = int(time.time())
    valid = {"iss": KEY, "sub": "alice", "exp": 4102444800, "room": "room", "grants": ["join", "view"]}
    write(d, "valid", jwt(valid))
    write(d, "admin", jwt({**valid, "room": "*", "grants": ["admin"]}))
    write(d, "expired", jwt({**valid, "exp": now - 3600}))
    write(d, "alg-none", jwt(valid, alg="none"))
    write(d, "wrong-key", jwt(valid, secret="another-secret-that-is-long-enough-0123"))

    d = target("layout")
    for preset in ("grid", "speaker", "single", "pip", "presentation"):
        write(d, preset, json.dumps({"preset": preset}))
    write(d, "regions", json.dumps({"regions": [
        {"id": "left", "x": 0, "y": 0, "width": 0.5, "height": 1, "sources": ["identity:user1"], "fit": "cover"},
        {"id": "top", "x": 0.5, "y": 0, "width": 0.5, "height": 0.5, "sources": ["speaker"], "z": 2},
        {"id": "rest", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5, "sources": ["screen", "others"],
         "max_tiles": 4, "arrange": "row"}], "labels": True, "background": "#203040"}))

    d = target("config")
    write(d, "full.toml", "\n".join([
        'listen = "127.0.0.1:8080"', 'rtc_ip = "127.0.0.1"', 'udp_ports = "40000-40100"',
        "width = 1280", "height = 720", "fps = 30", "video_kbps = 2000", "max_participants = 16",
        "room_linger_secs = 30.0", 'drain_timeout = "10m"', 'default_layout = "speaker"',
        "max_rooms = 100", "rate_per_sec = 5", "rate_burst = 20", "max_load = 0.9",
        'stun_urls = ["stun:stun.example.org:3478"]', 'turn_urls = ["turn:turn.example.org:3478?transport=udp"]',
        'turn_secret = "a-turn-secret"', 'turn_ttl = "1h"',
        'webhook_urls = ["https://hooks.example.org/tessera"]',
        "[[api_keys]]", f'key = "{KEY}"', f'secret = "{SECRET}"', ""]))
    write(d, "empty.toml", "")


if __name__ == "__main__":
    main()

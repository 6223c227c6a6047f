"""ImageConfigs: an image reference resolved to its id and config, with the answers kept.

Image ids are content digests, so what an id names never changes: a config found once
stays right, and a create by full id needs no call to the image service.
"""

from __future__ import annotations

import re

from berth.image.v1 import image_pb2

_FULL_ID = re.compile(r"(sha256:)?[a-f0-9]{64}")


class ImageConfigs:
    def __init__(self, image_client):
        self._image = image_client
        self._configs: dict[str, image_pb2.ImageConfig] = {}

    async def resolve(self, ref: str) -> tuple[str, image_pb2.ImageConfig]:
        """(image id, config); NotFound from the image service when nothing has that name."""
        if _FULL_ID.fullmatch(ref):
            image_id = ref if ref.startswith("sha256:") else f"sha256:{ref}"
            if image_id in self._configs:
                return image_id, self._configs[image_id]
        image = await self._image.GetImage(image_pb2.GetImageRequest(reference=ref))
        self.remember(image)
        return image.id, image.config

    def remember(self, image: image_pb2.Image) -> None:
        self._configs[image.id] = image.config

    def forget(self, image_id: str) -> None:
        self._configs.pop(image_id, None)

"""The image service: content store, image records and the overlayfs snapshotter."""

"""The build service: Dockerfiles into images (berth.build.v1)."""

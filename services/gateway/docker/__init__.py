"""The Docker Engine API, served by the gateway so the docker CLI and Docker SDKs drive berth.

Routes (routes/<resource>.py) are thin: parse the request, call the backend the gRPC
Engine API uses too (through its Protocol, services/gateway/backends/interfaces.py),
encode the answer as docker does. `errors` maps domain errors to HTTP once, `hijack`
holds the attach connections, `versions` the API versions spoken; the docker JSON
shapes and request parsing live in berth_docker (clients/python), shared with the CLI.
"""
